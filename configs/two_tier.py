"""Dadabots' recommendation: 2-tier SampleRNN, frame 16, 5 GRU layers, dim 1024."""

from samplernn_jax import default_config


def get_config():
  config = default_config.get_config()
  config.model.frame_sizes = (16,)  # One frame tier over the sample-level MLP.
  config.model.num_rnn_layers = 5  # Deeper frame tier, as Dadabots train it.
  return config
