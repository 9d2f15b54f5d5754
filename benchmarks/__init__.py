"""Benchmarks: this project against the PRiSM SampleRNN (TF2) reference.

How to run them and what each figure means: README.md, "Benchmarks"; how the training step
was made fast: PERF.md.
"""
