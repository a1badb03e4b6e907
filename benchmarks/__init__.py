"""Benchmarks: scripts that time parts of the pipeline (run them with `python -m benchmarks.<name>`)."""
