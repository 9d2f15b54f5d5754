"""Work split over the 'data' mesh axis: the parts of a step that are not per-row.

The train step runs its body on one device's rows under ``jax.shard_map``. Most of the work
is per row and splits by itself; these helpers cover what does not:

* ``split_rows``: a computation on parameters only (the sample tier's weight folds) done
  ``1/N`` per device and all-gathered, instead of whole on every device;
* ``row_mask``: random masks drawn for the global batch and sliced to this device's rows,
  so dropout on N devices equals dropout on one.

Outside ``shard_map`` (``axis_name=None``) both are the plain computation.
"""

from typing import Callable, Optional

import jax
import jax.numpy as jnp

DATA_AXIS = 'data'


def split_rows(
  fold: Callable[[jax.Array], jax.Array],
  x: jax.Array,
  *,
  in_axis: int,
  out_axis: int,
  axis_name: Optional[str],
) -> jax.Array:
  """``fold(x)`` where row ``i`` of ``x`` along ``in_axis`` gives row ``i`` of the result
  along ``out_axis`` only; each device folds ``ceil(n / N)`` rows, then all rows are gathered.

  Rows past ``n`` (padding to a multiple of ``N``) are folded as zeros and dropped. The
  gradient goes back as a reduce-scatter: each device gets its rows' cotangent summed over
  the devices, and the parameters' gradients leave as per-device partial sums (to be summed
  with the rest of the gradient).
  """
  if axis_name is None:
    return fold(x)
  num_devices = jax.lax.axis_size(axis_name)
  n = x.shape[in_axis]
  per_device = -(-n // num_devices)
  if per_device * num_devices != n:
    pad = [(0, 0)] * x.ndim
    pad[in_axis] = (0, per_device * num_devices - n)
    x = jnp.pad(x, pad)
  mine = jax.lax.dynamic_slice_in_dim(
    x, jax.lax.axis_index(axis_name) * per_device, per_device, axis=in_axis
  )
  folded = jax.lax.all_gather(fold(mine), axis_name, axis=out_axis, tiled=True)
  return jax.lax.slice_in_dim(folded, 0, n, axis=out_axis)


def row_mask(key: jax.Array, keep_prob: float, shape: tuple, axis_name: Optional[str]) -> jax.Array:
  """``bernoulli(key, keep_prob, shape)`` for this device's rows (axis 0) of the global batch."""
  if axis_name is None:
    return jax.random.bernoulli(key, keep_prob, shape)
  rows = shape[0]
  every_row = jax.random.bernoulli(
    key, keep_prob, (rows * jax.lax.axis_size(axis_name),) + tuple(shape[1:])
  )
  return jax.lax.dynamic_slice_in_dim(every_row, jax.lax.axis_index(axis_name) * rows, rows)
