"""Matmuls in the model's dtype: operands cast to it, products accumulated in float32.

``config.model.dtype='bfloat16'`` runs every matmul of the train step, forward and backward,
on bfloat16 operands with float32 accumulation and a float32 result; parameters, their
gradients, the optimizer state and the loss stay float32 (master weights). In float32 the
functions here are the plain ``jnp`` calls, so the float32 program is what it always was.

Why a custom VJP: autodiff of ``dot(x.astype(bf16), w.astype(bf16), preferred_element_type=f32)``
transposes the dot against the float32 cotangent, and JAX promotes the other (bfloat16)
operand back to float32: both backward matmuls would run in float32. Here the cotangent is
cast to the matmul dtype instead, and each operand's gradient comes back, accumulated in
float32, in that operand's own dtype: float32 for a parameter, so no gradient is rounded to
bfloat16 on its way to the optimizer.
"""

import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


def is_narrow(dtype) -> bool:
  """True when ``dtype`` is a matmul dtype other than float32 (bfloat16)."""
  return jnp.dtype(dtype) != jnp.float32


def matmul(x, w, dtype):
  """``x @ w`` with operands cast to ``dtype``, accumulated and returned in float32.

  Leading dimensions of ``x`` are flattened first: the backward's ``dw = x^T @ g`` then
  contracts one dimension, not several, which XLA:CPU would do by transposing ``g``.
  """
  x_NxI = x.reshape(-1, x.shape[-1])
  if is_narrow(dtype):
    out = einsum('ni,io->no', x_NxI, w, dtype)
  else:
    out = jnp.matmul(x_NxI.astype(dtype), w.astype(dtype), preferred_element_type=jnp.float32)
  return out.reshape(x.shape[:-1] + w.shape[-1:])


def einsum(spec: str, a, b, dtype):
  """``jnp.einsum(spec, a, b)`` on operands cast to ``dtype``, float32 accumulation and result.

  ``spec`` names two operands and the output; each index appears once per term, and an
  operand's index appears in the other operand (contracted) or in the output (kept), not
  in both: no batch indices. In a narrow dtype the product is one 2-D matmul between
  transposes and reshapes (see ``_as_matmul``).
  """
  _terms(spec)
  if not is_narrow(dtype):
    return jnp.einsum(spec, a, b)
  return _narrow_einsum(spec, (jnp.dtype(dtype), a.dtype, b.dtype), a, b)


def _terms(spec: str):
  inputs, out = spec.replace(' ', '').split('->')
  in_a, in_b = inputs.split(',')
  for term, other in ((in_a, in_b), (in_b, in_a)):
    if len(set(term)) != len(term) or any((c in other) == (c in out) for c in term):
      raise ValueError(
        f'einsum {spec!r}: each index of an operand must be either contracted '
        'with the other operand or kept in the output, once.'
      )
  return in_a, in_b, out


def _as_matmul(spec: str, a, b):
  """``einsum(spec, a, b)`` as one 2-D matmul, accumulated in float32.

  Each operand is viewed as ``[kept, contracted]`` or ``[contracted, kept]`` (a reshape;
  transposed only when its indices interleave), and the dot contracts whichever axis holds
  the contracted group: XLA:CPU runs bfloat16 x bfloat16 -> float32 only as such 2-D dots.
  Given one 3-D einsum whose output is transposed ('rde,ef->drf') it fuses the transpose
  into the dot and fails at run time ("Unsupported element type for DotThunk"); given an
  operand transposed by hand it folds the transpose into the dot and computes it in float32.
  """
  in_a, in_b, out = _terms(spec)
  contracted = [c for c in in_a if c in in_b]
  a_2d, a_axis, kept_a = _grouped(a, in_a, contracted)
  b_2d, b_axis, kept_b = _grouped(b, in_b, contracted)
  y = jax.lax.dot_general(
    a_2d, b_2d, (((a_axis,), (b_axis,)), ((), ())), preferred_element_type=jnp.float32
  )
  size = dict(zip(in_a, a.shape)) | dict(zip(in_b, b.shape))
  y = y.reshape([size[c] for c in kept_a + kept_b])
  return jnp.transpose(y, [(kept_a + kept_b).index(c) for c in out])


def _grouped(x, term: str, contracted: list):
  """``(x as 2-D, the axis of its contracted group, its kept indices in order)``."""
  kept = [c for c in term if c not in contracted]
  k = math.prod(x.shape[term.index(c)] for c in contracted)
  if list(term) == contracted + kept:
    return x.reshape(k, -1), 0, kept
  if list(term) != kept + contracted:
    x = jnp.transpose(x, [term.index(c) for c in kept + contracted])
  return x.reshape(-1, k), 1, kept


# ``dtypes``: (the matmul dtype, a's dtype, b's dtype), the last two for the gradients.
@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _narrow_einsum(spec, dtypes, a, b):
  return _narrow_einsum_fwd(spec, dtypes, a, b)[0]


def _narrow_einsum_fwd(spec, dtypes, a, b):
  a_n, b_n = a.astype(dtypes[0]), b.astype(dtypes[0])
  # The residuals are the narrow copies: half the bytes of float32 ones.
  return _as_matmul(spec, a_n, b_n), (a_n, b_n)


def _narrow_einsum_bwd(spec, dtypes, residuals, g):
  dtype, a_dtype, b_dtype = dtypes
  a_n, b_n = residuals
  in_a, in_b, out = _terms(spec)
  g_n = g.astype(dtype)
  da = _as_matmul(f'{out},{in_b}->{in_a}', g_n, b_n)
  db = _as_matmul(f'{in_a},{out}->{in_b}', a_n, g_n)
  return da.astype(a_dtype), db.astype(b_dtype)


_narrow_einsum.defvjp(_narrow_einsum_fwd, _narrow_einsum_bwd)


class Dense(nn.Module):
  """``flax.linen.Dense`` (same parameters, names and initializers) computed by ``matmul``:
  the input flattened to 2-D, operands in ``dtype``, float32 accumulation and output.

  ``nn.Dense(dtype=bfloat16)`` would return bfloat16 and round its bias to bfloat16.
  """

  features: int
  use_bias: bool = True
  dtype: Any = jnp.float32
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', self.kernel_init, (x.shape[-1], self.features), jnp.float32)
    y_NxO = matmul(x.reshape(-1, x.shape[-1]), kernel, self.dtype)
    if self.use_bias:  # Added in 2-D too: the bias gradient is one reduction over rows.
      y_NxO = y_NxO + self.param('bias', self.bias_init, (self.features,), jnp.float32)
    return y_NxO.reshape(x.shape[:-1] + (self.features,))
