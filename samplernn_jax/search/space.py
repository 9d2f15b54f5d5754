"""A search space: which config fields a hyper-parameter search varies, and over what.

A SPACE file is Python with ``get_space()`` returning ``{'section.field': distribution}``:

* an ``optuna.distributions`` object (``FloatDistribution(1e-4, 1e-2, log=True)``,
  ``IntDistribution(1, 4)``, ``CategoricalDistribution(['gru', 'lstm'])``), or
* a list of choices, shorthand for a categorical one: ``[256, 512]``.

Choices that are tuples (``model.frame_sizes``: ``[(16,), (16, 64)]``) are kept in Optuna
as their ``repr`` strings (``'(16, 64)'``): Optuna's storage holds only None, bool, int,
float and str choices. ``to_config`` turns them back into tuples, so a trial's parameters
read the same in the database, the report and the trial's config.
"""

import ast
import os
from typing import Any, Mapping

import ml_collections
import optuna

from samplernn_jax import config as config_lib

Space = dict  # 'section.field' -> optuna.distributions.BaseDistribution

# Validation bits per sample compare two models only on the same levels: a-law and linear
# spend their 256 levels differently from mu-law, and more levels cost more bits.
QUANTIZATION_FIELDS = ('model.q_type', 'model.q_levels')


class SpaceError(ValueError):
  """A SPACE file that cannot drive a search; the message says what to change."""


def _encode_choice(choice):
  return repr(tuple(choice)) if isinstance(choice, (tuple, list)) else choice


def _distribution(name: str, value) -> optuna.distributions.BaseDistribution:
  if isinstance(value, optuna.distributions.CategoricalDistribution):
    value = list(value.choices)
  if isinstance(value, (list, tuple)):
    if not value:
      raise SpaceError(f'{name}: an empty list of choices; give at least one value.')
    return optuna.distributions.CategoricalDistribution([_encode_choice(c) for c in value])
  if isinstance(value, optuna.distributions.BaseDistribution):
    return value
  raise SpaceError(
    f'{name}: {value!r} is not a distribution; use an optuna.distributions '
    'object or a list of choices.'
  )


def _field(config: ml_collections.ConfigDict, name: str):
  """The config node holding ``name`` and its last key, or SpaceError."""
  *sections, key = name.split('.')
  node = config
  for part in sections:
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      break
    node = node[part]
  else:
    if (
      isinstance(node, ml_collections.ConfigDict)
      and key in node
      and not isinstance(node[key], ml_collections.ConfigDict)
    ):
      return node, key
  raise SpaceError(
    f'{name}: no such config field; fields look like model.dim or '
    'train.learning_rate (see configs/default.py).'
  )


def decode(config: ml_collections.ConfigDict, name: str, value):
  """An Optuna parameter value as the config field's type (tuple fields from their repr)."""
  node, key = _field(config, name)
  if isinstance(node[key], tuple) and isinstance(value, str):
    return tuple(ast.literal_eval(value))
  return value


def to_config(
  config: ml_collections.ConfigDict, params: Mapping[str, Any]
) -> ml_collections.ConfigDict:
  """A copy of ``config`` with every ``'section.field': value`` of ``params`` set."""
  config = ml_collections.ConfigDict(config.to_dict())
  for name, value in params.items():
    node, key = _field(config, name)
    try:
      node[key] = decode(config, name, value)
    except (TypeError, ValueError, SyntaxError) as e:
      raise SpaceError(
        f'{name}={value!r} does not fit the config field ({type(node[key]).__name__}): {e}'
      ) from None
  return config


def _sample_values(dist: optuna.distributions.BaseDistribution) -> list:
  if isinstance(dist, optuna.distributions.CategoricalDistribution):
    return list(dist.choices)
  return [dist.low, dist.high]


def validate(space: Mapping, config: ml_collections.ConfigDict) -> Space:
  """Every entry checked against ``config``; returns ``{name: optuna distribution}``.

  Raises SpaceError naming the entry: an unknown field, an empty or malformed distribution,
  or a value the field cannot hold.
  """
  if not isinstance(space, Mapping) or not space:
    raise SpaceError(
      'get_space() must return a non-empty dict of {\'section.field\': distribution}.'
    )
  out = {}
  for name, value in space.items():
    _field(config, name)
    dist = _distribution(name, value)
    for v in _sample_values(dist):
      to_config(config, {name: v})
    out[name] = dist
  return out


def varies(space: Space, name: str) -> bool:
  """Whether the space gives ``name`` more than one value."""
  dist = space.get(name)
  return dist is not None and not dist.single()


def load(path: str, config: ml_collections.ConfigDict) -> Space:
  """Runs the SPACE file's ``get_space()`` and validates it; SpaceError on any problem."""
  if not os.path.isfile(path):
    raise SpaceError(f'--space={path}: no such file.')
  try:
    space = config_lib.from_file(path, 'get_space')
  except SpaceError:
    raise
  except Exception as e:  # Whatever the file does wrong (optuna rejects empty ranges here).
    raise SpaceError(f'--space={path}: {type(e).__name__}: {e}') from None
  try:
    return validate(space, config)
  except SpaceError as e:
    raise SpaceError(f'--space={path}: {e}') from None
