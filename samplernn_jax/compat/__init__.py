"""Other SampleRNNs' files, standing on the core: PRiSM's configs and TensorFlow checkpoints."""
