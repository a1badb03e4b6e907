"""Listening logs in the project's contract: a simulator with ground truth, adapters for public logs."""
