"""The TFX pipeline: `configs.py` (every knob), `pipeline.py` (the one create_pipeline()), thin runners."""
