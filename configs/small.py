"""The default config at dim 256: a quarter of the width, a sixteenth of the RNN work.

The benchmarks' third shape; a 3-tier model that trains at seconds per step on a CPU.
"""

from samplernn_jax import default_config


def get_config():
  config = default_config.get_config()
  config.model.dim = 256  # Every RNN, upsampling and MLP layer a quarter as wide.
  return config
