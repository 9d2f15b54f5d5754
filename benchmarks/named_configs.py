"""``configs/NAME.py`` by name, for the benchmark commands (``configs/`` is not a package).

A leaf module: ``run``, ``scaling`` and ``train_step`` all read configs through it, and none of
them needs another to do so.
"""

import os

import ml_collections

from samplernn_jax import config as config_lib

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


def load_config(name: str) -> ml_collections.ConfigDict:
  """``configs/NAME.py``'s config, loaded by path as ``--config`` loads it.

  Raises ValueError naming the file when there is none.
  """
  path = os.path.join(CONFIGS_DIR, f'{name}.py')
  if not os.path.isfile(path):
    raise ValueError(f'no configs/{name}.py.')
  return config_lib.from_file(path)
