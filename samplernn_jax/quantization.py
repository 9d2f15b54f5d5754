"""Amplitude quantizers: float waveforms in [-1, 1] <-> integer levels in [0, q_levels).

The formulas are PRiSM SampleRNN's (samplernn/utils.py), so that data quantized here
trains a model that behaves like one trained there:

* ``mu-law``: ITU-T G.711 mu-law companding with mu = 255, rounded to 256 levels.
* ``a-law``: G.711 A-law companding (A = 87.6), rounded to 256 levels the same way.
* ``linear``: any number of levels, without per-file min-max normalization
  (see samplernn-pytorch issue 21 for why normalization hurts).

Every function accepts NumPy arrays (and Python sequences) or JAX arrays and returns the
same kind, so the input pipeline (NumPy, worker processes) and the sampler (jitted JAX)
share one definition. Amplitudes outside [-1, 1] are clamped. Non-finite input raises
``ValueError`` whenever the values are concrete; inside ``jax.jit`` they cannot be
inspected, and callers there must pass finite data.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Q_TYPES = ('mu-law', 'a-law', 'linear')
# The companding quantizers are defined for 8-bit codes only.
COMPANDING_LEVELS = 256
_A = 87.6
_LINEAR_EPS = 1e-5


def _xp(x: Any):
  return jnp if isinstance(x, jax.Array) else np


def _check_finite(x, what: str) -> None:
  if isinstance(x, jax.core.Tracer):
    return
  if not bool(np.all(np.isfinite(np.asarray(x)))):
    raise ValueError(
      f'{what}: input holds non-finite values (NaN or inf); '
      'decode or clean the audio before quantizing.'
    )


def check_q_type(q_type: str, q_levels: int) -> None:
  """Raises ValueError unless (q_type, q_levels) is a supported pair."""
  if q_type not in Q_TYPES:
    raise ValueError(f'q_type must be one of {Q_TYPES}, got {q_type!r}.')
  if q_type in ('mu-law', 'a-law') and q_levels != COMPANDING_LEVELS:
    raise ValueError(
      f'{q_type} quantization uses {COMPANDING_LEVELS} levels; set '
      f'q_levels=256 or use q_type="linear" for {q_levels} levels.'
    )
  if q_levels < 2:
    raise ValueError(f'q_levels must be at least 2, got {q_levels}.')


def mu_law_encode(x, q_levels: int = 256):
  _check_finite(x, 'mu_law_encode')
  xp = _xp(x)
  x = xp.asarray(x, dtype=xp.float32)
  mu = q_levels - 1
  magnitude = xp.log1p(mu * xp.minimum(xp.abs(x), 1.0)) / np.log1p(mu)
  signal = xp.sign(x) * magnitude
  return ((signal + 1) / 2 * mu + 0.5).astype(xp.int32)


def mu_law_decode(q, q_levels: int = 256):
  xp = _xp(q)
  mu = q_levels - 1
  signal = 2 * (xp.asarray(q).astype(xp.float32) / mu) - 1
  magnitude = (1 / mu) * ((1 + mu) ** xp.abs(signal) - 1)
  return (xp.sign(signal) * magnitude).astype(xp.float32)


def a_law_encode(x, q_levels: int = 256):
  _check_finite(x, 'a_law_encode')
  xp = _xp(x)
  x = xp.asarray(x, dtype=xp.float32)
  ax = xp.minimum(xp.abs(x), 1.0) * _A
  denominator = 1 + np.log(_A)
  # The log branch is evaluated on max(ax, 1) so it never sees log(0).
  magnitude = xp.where(ax < 1, ax / denominator, (1 + xp.log(xp.maximum(ax, 1.0))) / denominator)
  signal = xp.sign(x) * magnitude
  mu = q_levels - 1
  return ((signal + 1) / 2 * mu + 0.5).astype(xp.int32)


def a_law_decode(q, q_levels: int = 256):
  xp = _xp(q)
  mu = q_levels - 1
  signal = 2 * (xp.asarray(q).astype(xp.float32) / mu) - 1
  y = xp.abs(signal) * (1 + np.log(_A))
  magnitude = xp.where(y < 1, y / _A, xp.exp(xp.maximum(y, 1.0) - 1) / _A)
  return (xp.sign(signal) * magnitude).astype(xp.float32)


def linear_encode(x, q_levels: int):
  _check_finite(x, 'linear_encode')
  xp = _xp(x)
  x = xp.clip(xp.asarray(x, dtype=xp.float32), -1.0, 1.0)
  q = ((x + 1) / 2 * (q_levels - _LINEAR_EPS) + _LINEAR_EPS / 2).astype(xp.int32)
  # x == 1 exactly lands on q_levels - 1 already; the clip guards float rounding.
  return xp.clip(q, 0, q_levels - 1)


def linear_decode(q, q_levels: int):
  xp = _xp(q)
  return (xp.asarray(q).astype(xp.float32) / (q_levels / 2) - 1).astype(xp.float32)


def encode(x, q_type: str, q_levels: int):
  """Quantizes amplitudes ``x`` (any shape) to int32 levels in [0, q_levels)."""
  check_q_type(q_type, q_levels)
  if q_type == 'mu-law':
    return mu_law_encode(x, q_levels)
  if q_type == 'a-law':
    return a_law_encode(x, q_levels)
  return linear_encode(x, q_levels)


def decode(q, q_type: str, q_levels: int):
  """Maps integer levels back to float32 amplitudes in [-1, 1]."""
  check_q_type(q_type, q_levels)
  if q_type == 'mu-law':
    return mu_law_decode(q, q_levels)
  if q_type == 'a-law':
    return a_law_decode(q, q_levels)
  return linear_decode(q, q_levels)


def silence_level(q_levels: int) -> int:
  """``q_levels // 2``: the level every quantizer here encodes 0.0 to (tested).

  What silence is made of: PRiSM's initial frame when generating, and the padding before a
  file's first window when training.
  """
  return int(q_levels) // 2
