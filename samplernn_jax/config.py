"""Checks that a ``ConfigDict`` (see ``configs/``) describes a model that can be built, and
fills a stored config's missing fields with the library's defaults.

Every message says what to change, since these errors are read by people launching a
multi-day run from the command line.
"""

import importlib.util
import inspect
import os
import re
from typing import Mapping, Union

import ml_collections

from samplernn_jax import default_config
from samplernn_jax import quantization
from samplernn_jax import rnn


def with_defaults(stored: Union[ml_collections.ConfigDict, Mapping]) -> ml_collections.ConfigDict:
  """``stored`` (a config, or the dict of its JSON) over ``default_config.get_config()``.

  Stored values win; a field that a run written before it existed lacks gets its default, so
  code reading a checkpoint's config never needs a fallback of its own.
  """
  if isinstance(stored, ml_collections.ConfigDict):
    stored = stored.to_dict()
  return ml_collections.ConfigDict(_merged(default_config.get_config().to_dict(), stored))


def _merged(defaults: Mapping, stored: Mapping) -> dict:
  merged = dict(defaults)
  for key, value in stored.items():
    if isinstance(value, Mapping) and isinstance(defaults.get(key), Mapping):
      value = _merged(defaults[key], value)
    merged[key] = value
  return merged


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Raises ValueError on an invalid combination; returns ``config`` unchanged."""
  m = config.model
  frame_sizes = tuple(m.frame_sizes)
  if not frame_sizes:
    raise ValueError(
      'config.model.frame_sizes is empty; give at least one frame size, '
      'e.g. (16,) for a 2-tier or (16, 64) for a 3-tier model.'
    )
  if any(int(f) != f or f < 1 for f in frame_sizes):
    raise ValueError(
      f'config.model.frame_sizes={frame_sizes}: every frame size must be a positive integer.'
    )
  for below, above in zip(frame_sizes, frame_sizes[1:]):
    if above <= below:
      raise ValueError(
        f'config.model.frame_sizes={frame_sizes} must be strictly ascending '
        f'(lowest tier first): {above} follows {below}.'
      )
    if above % below:
      raise ValueError(
        f'config.model.frame_sizes={frame_sizes}: each frame size must divide '
        f'the next, but {below} does not divide {above}.'
      )
  if m.rnn_type not in rnn.RNN_TYPES:
    raise ValueError(f'config.model.rnn_type={m.rnn_type!r}; use one of {rnn.RNN_TYPES}.')
  if m.dim < 1 or m.num_rnn_layers < 1:
    raise ValueError(
      f'config.model.dim={m.dim} and config.model.num_rnn_layers='
      f'{m.num_rnn_layers} must both be positive.'
    )
  if not 0.0 <= m.rnn_dropout < 1.0:
    raise ValueError(f'config.model.rnn_dropout={m.rnn_dropout} must lie in [0, 1).')
  if m.rnn_form not in rnn.RNN_FORMS:
    raise ValueError(f'config.model.rnn_form={m.rnn_form!r}; use one of {rnn.RNN_FORMS}.')
  if m.dtype not in ('float32', 'bfloat16'):
    raise ValueError(f"config.model.dtype={m.dtype!r}; use 'float32' or 'bfloat16'.")
  try:
    quantization.check_q_type(m.q_type, m.q_levels)
  except ValueError as e:
    raise ValueError(f'config.model: {e}') from None
  if 'data' in config:
    big = frame_sizes[-1]
    seq_len = config.data.seq_len
    if seq_len < big or seq_len % big:
      raise ValueError(
        f'config.data.seq_len={seq_len} must be a positive multiple of the top '
        f'frame size {big}; e.g. {max(1, round(seq_len / big)) * big}.'
      )
  if 'data' in config:
    d = config.data
    if d.sample_rate < 1:
      raise ValueError(f'config.data.sample_rate={d.sample_rate} must be a positive rate in Hz.')
    if not 0 <= d.val_frac < 1:
      raise ValueError(f'config.data.val_frac={d.val_frac} must lie in [0, 1).')
    if d.on_bad_file not in BAD_FILE_ACTIONS:
      raise ValueError(f'config.data.on_bad_file={d.on_bad_file!r}; use one of {BAD_FILE_ACTIONS}.')
  if 'train' in config:
    _validate_train(config.train)
  return config


# What training does with a file whose header or length is unusable.
BAD_FILE_ACTIONS = ('skip', 'stop')


def _validate_train(t: ml_collections.ConfigDict) -> None:
  """Counts that must be positive or non-negative; checked before any data is made."""
  for name in ('batch_size', 'num_epochs', 'checkpoint_every_epochs'):
    if t[name] < 1:
      raise ValueError(f'config.train.{name}={t[name]} must be at least 1.')
  for name in (
    'max_checkpoints',
    'early_stopping_patience',
    'log_every_steps',
    'eval_every_steps',
    'checkpoint_every_steps',
    'reduce_learning_rate_after',
  ):
    if t[name] < 0:
      raise ValueError(f'config.train.{name}={t[name]} must be 0 (off) or positive.')


def describe_fields(config: ml_collections.ConfigDict) -> str:
  """Every field of ``config`` as ``--config.SECTION.FIELD=VALUE  # meaning``, one per line.

  The meanings are the one-line comments of ``default_config.py``, the one place they are
  written; a field without one (added by a config file) is listed without.
  """

  meaning = {}
  for line in inspect.getsource(default_config).splitlines():
    m = re.match(r'\s*(\w+)\.(\w+) = .*?#\s*(.+)$', line)
    if m and m.group(1) != 'config':
      meaning[(m.group(1), m.group(2))] = m.group(3)
  lines = []
  for section, fields in config.items():
    if not isinstance(fields, ml_collections.ConfigDict):
      continue
    for name, value in fields.items():
      if isinstance(value, (tuple, list)):
        value = ','.join(str(v) for v in value)
      note = meaning.get((section, name))
      lines.append(f'--config.{section}.{name}={value}' + (f'  # {note}' if note else ''))
  return '\n'.join(lines)


def from_file(path: str, function: str = 'get_config'):
  """What ``function()`` of the Python file at ``path`` returns, the file loaded by path as
  ``--config`` loads it: a config file's ``get_config()``, a search space's ``get_space()``.

  The one loader of such files (the benchmarks, the tests and ``search.space`` use it); they are
  read, never imported as modules of a package. FileNotFoundError names a missing file.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such config file.')
  name = '_samplernn_file_' + re.sub(r'\W', '_', os.path.abspath(path))
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return getattr(module, function)()
