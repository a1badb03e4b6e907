"""The harness that `experiments/` and `benchmarks/` share: run-time estimates, progress lines, pipeline runs in
child processes, and small number helpers. One copy of each, so the two cannot drift apart again.

Imports flow one way: experiments and benchmarks import the harness; the harness imports only the pipeline
(lazily, inside the child process) and the standard library.
"""
