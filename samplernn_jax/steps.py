"""The compiled steps: the mesh and shardings, the train and eval steps, a validation pass.

Data parallel with ``jax.jit`` shardings: the global batch is split by rows over the 1-D
mesh axis 'data', the train state is replicated. Each step runs per device
(``jax.shard_map``) and reduces over devices once. The RNN carry goes from window to
window (truncated BPTT) and is reset, row by row, where a new file starts.
"""

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np
import optax

from samplernn_jax import metrics as metrics_lib
from samplernn_jax import model as model_lib
from samplernn_jax import sharding
from samplernn_jax.train_state import TrainState

# ---------------------------------------------------------------------------------------
# Mesh, shardings, and arrays to and from the devices
# ---------------------------------------------------------------------------------------


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over all (global) devices with the axis 'data'."""
  return Mesh(np.asarray(jax.devices() if devices is None else devices), (sharding.DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  """Batch-major arrays (windows, carry, masks) split by rows over the 'data' axis."""
  return NamedSharding(mesh, P(sharding.DATA_AXIS))


def host_local(tree):
  """One device's copy of replicated arrays (what a single-host sampler can use)."""
  return jax.tree.map(lambda a: a.addressable_data(0) if isinstance(a, jax.Array) else a, tree)


def global_batch(mesh: Mesh, batch: dict, keys=('x', 'reset')) -> dict:
  """This host's rows of a pipeline batch as global arrays split over 'data'.

  The pipeline's scalar 'reset' becomes one flag per row. The copy to the devices is the
  loop's one host-to-device transfer per step, allowed under ``jax.transfer_guard('disallow')``.
  """
  split = data_sharded(mesh)
  rows = batch['x'].shape[0]
  out = {}
  for k in keys:
    v = np.asarray(batch[k])
    if k == 'reset':
      v = np.broadcast_to(v, (rows,))
    # The copy is meant; on several processes JAX makes it through a callback that the
    # transfer guard counts as implicit (seen on a two-process launch), so allow it here.
    with jax.transfer_guard_host_to_device('allow'):
      out[k] = jax.make_array_from_process_local_data(split, np.ascontiguousarray(v))
  return out


# ---------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------


def make_init_carry(config: ml_collections.ConfigDict, mesh: Mesh):
  """Jitted ``params -> carry`` for the global batch (learned h0 if ``learn_h0``)."""
  model = model_lib.from_config(config.model)
  batch_size = int(config.train.batch_size)

  def init_carry(params):
    return model.apply({'params': params}, batch_size, method=model_lib.SampleRNN.initial_carry)

  return jax.jit(init_carry, in_shardings=replicated(mesh), out_shardings=data_sharded(mesh))


def _reset(model, params, carry, reset_B):
  initial = model.apply(
    {'params': params}, reset_B.shape[0], method=model_lib.SampleRNN.initial_carry
  )
  return model_lib.reset_carry(initial, carry, reset_B)


def _data_axis(mesh: Mesh):
  """The mesh axis the step reduces over; None on one device, where there is nothing to
  split or reduce (single-device collectives would still copy their buffers on a CPU)."""
  return sharding.DATA_AXIS if mesh.size > 1 else None


def _per_device(body, mesh: Mesh, in_specs, out_specs):
  """``body`` run on each device's rows: ``jax.shard_map`` over 'data', jitted.

  Inside, batch-major arrays hold this device's ``B / N`` rows and everything else is
  replicated; the body reduces over devices itself (``lax.pmean``/``psum``), once per step.
  Written per device, custom VJPs, ``lax.map`` over rows, reshapes and the carry stay on
  each device's rows (left to sharding propagation, XLA gathered them whole instead).
  """
  if _data_axis(mesh) is None:
    return body
  return jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=out_specs)


def make_train_step(config: ml_collections.ConfigDict, mesh: Mesh):
  """Jitted ``(state, carry, batch) -> (state, carry, metrics)``; state and carry donated.

  ``batch = {'x': int32[B, seq_len + big_frame], 'reset': bool[B]}`` as global arrays
  split over 'data'. Rows with ``reset`` start from the initial carry (a new file). The
  gradient flows through one window only (truncated BPTT). ``metrics``: loss (nats),
  bits_per_sample, accuracy, grad_norm, replicated scalars.

  Each device computes the loss and gradient of its own rows; the gradients (and metrics)
  are averaged over devices once, and every device applies the same update. With equal
  rows per device that is the gradient of the global batch's mean loss, as on one device.
  """
  axis = _data_axis(mesh)
  model = model_lib.from_config(config.model, axis_name=axis)
  big = model.big_frame_size

  def train_step(state: TrainState, carry, batch):
    x_BxL = batch['x']
    dropout_rng = jax.random.fold_in(state.rng, state.step)

    def loss_fn(params):
      start = _reset(model, params, carry, batch['reset'])
      new_carry, logits = model.apply(
        {'params': params}, x_BxL, start, deterministic=False, rngs={'dropout': dropout_rng}
      )
      loss, metrics = metrics_lib.loss_and_metrics(logits, x_BxL[:, big:])
      return loss, (new_carry, metrics)

    # Differentiate this device's copy of the parameters, so its gradient is its own rows'
    # (summed once below) rather than reduced implicitly wherever a parameter is used.
    params = state.params
    if axis is not None:
      params = jax.tree.map(lambda p: jax.lax.pcast(p, axis, to='varying'), params)
    grads, (new_carry, metrics) = jax.grad(loss_fn, has_aux=True)(params)
    if axis is not None:
      grads, metrics = jax.lax.pmean((grads, metrics), axis)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics['grad_norm'] = optax.global_norm(grads)
    state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return state, jax.lax.stop_gradient(new_carry), metrics

  rows = P(sharding.DATA_AXIS)
  step = _per_device(train_step, mesh, in_specs=(P(), rows, rows), out_specs=(P(), rows, P()))
  rep, dat = replicated(mesh), data_sharded(mesh)
  return jax.jit(
    step, in_shardings=(rep, dat, dat), out_shardings=(rep, dat, rep), donate_argnums=(0, 1)
  )


def make_eval_step(config: ml_collections.ConfigDict, mesh: Mesh):
  """Jitted ``(params, carry, batch) -> (carry, sums)``; ``batch`` also has 'mask' bool[B].

  ``sums`` (see ``metrics.weighted_sums``) add up over a pass; padding rows count zero.
  Each device evaluates its own rows; the sums are added over devices once.
  """
  axis = _data_axis(mesh)
  model = model_lib.from_config(config.model, axis_name=axis)
  big = model.big_frame_size

  def eval_step(params, carry, batch):
    x_BxL = batch['x']
    start = _reset(model, params, carry, batch['reset'])
    carry, logits = model.apply({'params': params}, x_BxL, start, deterministic=True)
    sums = metrics_lib.weighted_sums(logits, x_BxL[:, big:], batch['mask'])
    return carry, sums if axis is None else jax.lax.psum(sums, axis)

  rows = P(sharding.DATA_AXIS)
  step = _per_device(eval_step, mesh, in_specs=(P(), rows, rows), out_specs=(rows, P()))
  rep, dat = replicated(mesh), data_sharded(mesh)
  return jax.jit(step, in_shardings=(rep, dat, dat), out_shardings=(dat, rep), donate_argnums=(1,))


@jax.jit
def all_finite(tree) -> jax.Array:
  """Whether every leaf of ``tree`` is finite: one bool on the device."""
  return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)]))


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------


def evaluate(eval_step, init_carry, params, val_dataset, mesh: Mesh) -> dict:
  """One pass over ``val_dataset``: ``{'val_loss', 'val_bits_per_sample', 'val_accuracy'}``."""
  carry, total = init_carry(params), None
  for batch in val_dataset:
    carry, sums = eval_step(params, carry, global_batch(mesh, batch, ('x', 'reset', 'mask')))
    total = sums if total is None else jax.tree.map(jnp.add, total, sums)
  if total is None:
    return {}
  return {f'val_{k}': v for k, v in metrics_lib.from_sums(jax.device_get(total)).items()}
