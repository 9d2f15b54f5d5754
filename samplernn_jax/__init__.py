"""SampleRNN (Mehri et al., ICLR 2017) in JAX/Flax: hierarchical raw-audio generation.

The core (model, training, sampling, checkpoints, input) is the modules here; what stands on
it is in ``listening``, ``corpus``, ``search``, ``compat`` and ``commands``.
"""

import importlib.metadata

try:
  __version__ = importlib.metadata.version('samplernn_jax')
except importlib.metadata.PackageNotFoundError:  # A checkout used without installing it.
  __version__ = '0+unknown'
