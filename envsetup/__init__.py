"""Environment set-up that has to happen before any project code runs (see install_hook.py)."""
