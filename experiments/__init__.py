"""Reproductions of the paper's experiments ("Negative Feedback for Music Personalization", arXiv 2406.04488)
as configurations of this project's own pipeline; `python -m experiments.reproduce --help`."""
