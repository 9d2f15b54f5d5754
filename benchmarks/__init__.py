"""Benchmarks: this project against the PRiSM SampleRNN (TF2) reference.

How to run them and what each figure means: docs/benchmarks.md; how the training step
was made fast: PERF.md.
"""
