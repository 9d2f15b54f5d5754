"""``configs/NAME.py`` by name, for the benchmark commands (``configs/`` is not a package).

A leaf module: ``run``, ``scaling`` and ``train_step`` all read configs through it, and none of
them needs another to do so.
"""

import importlib.util
import os

import ml_collections

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


def load_config(name: str) -> ml_collections.ConfigDict:
  """``configs/NAME.py``'s config, loaded by path as ``--config`` loads it.

  Raises ValueError naming the file when there is none.
  """
  path = os.path.join(CONFIGS_DIR, f'{name}.py')
  if not os.path.isfile(path):
    raise ValueError(f'no configs/{name}.py.')
  spec = importlib.util.spec_from_file_location(f'_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()
