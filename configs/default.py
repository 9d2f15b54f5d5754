"""PRiSM SampleRNN's defaults: 3-tier [16, 64], dim 1024, 4 GRU layers, mu-law, 16 kHz.

Every field and what it means: ``samplernn_jax/default_config.py``. Override any of them on
the command line (``--config.model.dim=512``) or copy this file and change them here.
"""

from samplernn_jax import default_config


def get_config():
  return default_config.get_config()
