"""The sample-level convolution as per-tap table lookups, with a hand-written backward.

``Conv1D(Embedding(ids))[t] = sum_k E[ids[t + k]] @ W_k = sum_k T_k[ids[t + k]]`` with
``T_k = E @ W_k``: ``F`` row gathers per sample instead of a ``F * Q``-wide matmul.

The backward of a gather is a scatter-add of the cotangent into the table. Plain autodiff
lets XLA fuse the cotangent's producer (the ReLU mask, the next layer's transposed matmul)
into each of the ``F`` scatters, so XLA:CPU recomputes it per tap and per row; here the
cotangent is materialized once and each tap's table gradient is a segment sum of it.
"""

import functools

import jax
import jax.numpy as jnp

# The name of XLA:CPU's loop over rows in ``tap_lookup_relu``, so that a reader of the compiled
# program (``benchmarks.hlo.loop_depth``) can tell it from the model's own loops: the GPU
# program has no such loop.
ROW_LOOP_SCOPE = 'lookup_row_loop'


def _gather_sum(tables_FxQxD, ids_BxL, num_steps):
  tables_FxQxD = jnp.asarray(tables_FxQxD)
  out = None
  for k in range(tables_FxQxD.shape[0]):
    rows = tables_FxQxD[k].at[ids_BxL[:, k : k + num_steps]].get(mode='promise_in_bounds')
    out = rows if out is None else out + rows
  return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def tap_lookup(tables_FxQxD, ids_BxL, num_steps: int):
  """``out[b, t] = sum_k tables[k, ids[b, t + k]]``: ``[B, num_steps, D]``.

  ``ids_BxL``: integers in ``[0, Q)`` (not checked), ``L >= num_steps + F - 1``; they get
  no gradient.
  """
  return _gather_sum(tables_FxQxD, ids_BxL, num_steps)


def _tap_lookup_fwd(tables_FxQxD, ids_BxL, num_steps):
  # The tables ride along only for their shape and dtype; they are live anyway.
  return _gather_sum(tables_FxQxD, ids_BxL, num_steps), (ids_BxL, tables_FxQxD)


def _tap_lookup_bwd(num_steps, residuals, g_BxTxD):
  ids_BxL, tables_FxQxD = residuals
  return _table_grads(g_BxTxD, ids_BxL, tables_FxQxD), None


def _table_grads(g_BxTxD, ids_BxL, tables_FxQxD):
  """``d tables[k] = sum over (b, t) with ids[b, t + k] = q of g[b, t]``, per tap."""
  num_taps, q, d = tables_FxQxD.shape
  num_steps = g_BxTxD.shape[1]
  g_NxD = g_BxTxD.reshape(-1, d)
  grads = [
    jax.ops.segment_sum(g_NxD, ids_BxL[:, k : k + num_steps].reshape(-1), num_segments=q)
    for k in range(num_taps)
  ]
  return jnp.stack(grads).astype(tables_FxQxD.dtype)


tap_lookup.defvjp(_tap_lookup_fwd, _tap_lookup_bwd)


@jax.custom_vjp
def tap_lookup_relu(tables_FxQxD, ids_BxL, addend_BxTxD, bias_D):
  """``relu(tap_lookup(tables, ids, T) + addend + bias)``: the sample MLP's first layer.

  All float32; ``addend_BxTxD`` fixes ``T``.

  The ReLU's backward reads its output, not its input, so the looked-up sum has a single
  consumer and XLA:CPU fuses the ``F`` gathers, the adds and the ReLU into one pass;
  with the input also read by the backward, it materialized every tap's rows separately.
  """
  return _lookup_relu(tables_FxQxD, ids_BxL, addend_BxTxD, bias_D)


def _lookup_relu(tables_FxQxD, ids_BxL, addend_BxTxD, bias_D):
  num_steps = addend_BxTxD.shape[1]

  def rows(ids, addend):
    return jnp.maximum(_gather_sum(tables_FxQxD, ids, num_steps) + addend + bias_D, 0.0)

  def row_by_row(ids, addend):
    # A loop over the batch: its output is a buffer XLA cannot recompute elsewhere. Without
    # it, XLA:CPU copies the ReLU into each consumer and materializes the F gathers instead.
    with jax.named_scope(ROW_LOOP_SCOPE):
      out = jax.lax.map(lambda a: rows(*a), (ids[:, None], addend[:, None]))
    return out.reshape(addend.shape)

  # Only XLA:CPU pays for the loop; on a GPU a loop over rows would serialize the batch, and
  # its fusions keep the gathers in registers anyway. The choice is made when lowering.
  return jax.lax.platform_dependent(ids_BxL, addend_BxTxD, cpu=row_by_row, default=rows)


def _tap_lookup_relu_fwd(tables_FxQxD, ids_BxL, addend_BxTxD, bias_D):
  out = _lookup_relu(tables_FxQxD, ids_BxL, addend_BxTxD, bias_D)
  return out, (ids_BxL, tables_FxQxD, out, bias_D)


def _tap_lookup_relu_bwd(residuals, g_BxTxD):
  ids_BxL, tables_FxQxD, out, bias_D = residuals
  g_pre = jnp.where(out > 0, g_BxTxD, 0.0)
  return (
    _table_grads(g_pre, ids_BxL, tables_FxQxD),
    None,
    g_pre,
    jnp.sum(g_pre, axis=(0, 1)).astype(bias_D.dtype),
  )


tap_lookup_relu.defvjp(_tap_lookup_relu_fwd, _tap_lookup_relu_bwd)
