"""Benchmarks: this project against the PRiSM SampleRNN (TF2) reference; see README.bench.md."""
