"""The data contract: `contract.py` for Python, `listening_events.pbtxt` for TFX."""
