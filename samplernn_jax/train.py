"""Training: truncated BPTT over windows, data parallel with ``jax.jit`` shardings.

``train_and_evaluate(config, workdir, data_dir)`` reads top to bottom: input, model and
state, shardings, resume, the loop (one jitted step per window; the RNN carry goes from
window to window and is reset on each new batch of files), then at every epoch end
validation, early stopping, a checkpoint and a few generated clips.

The PRiSM semantics kept here (train.py / callbacks.py there): adam with eps 1e-4, sgd and
rmsprop (eps 1e-5) with momentum, exponential LR decay ``lr * e^-0.1`` per epoch after
``reduce_learning_rate_after`` epochs, checkpoint policy 'Always'/'Best' by ``monitor``,
early stopping after ``early_stopping_patience`` epochs without improvement, generated
clips named ``ID_e=EPOCH_t=TEMP.wav`` after each checkpoint.
"""

import json
import math
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Optional, Sequence, Union

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from samplernn_jax import checkpoint as checkpoint_lib
from samplernn_jax import clip_score
from samplernn_jax import config as config_lib
from samplernn_jax import gallery
from samplernn_jax import metrics as metrics_lib
from samplernn_jax import model as model_lib
from samplernn_jax import sharding

OPTIMIZERS = ('adam', 'sgd', 'rmsprop')
RMSPROP_EPS = 1e-5  # PRiSM's RMSprop epsilon (train.py: create_rmsprop_optimizer).
StepsPerEpoch = Union[int, Sequence[int], None]


# ---------------------------------------------------------------------------------------
# Optimizer
# ---------------------------------------------------------------------------------------

def learning_rate_schedule(config: ml_collections.ConfigDict,
                           steps_per_epoch: StepsPerEpoch = None) -> optax.Schedule:
  """Constant, or PRiSM's ``lr * exp(-decay)`` per epoch from epoch ``reduce_after`` on.

  With ``reduce_learning_rate_after = N`` epochs ``0 .. N-1`` (0-based) use the initial
  rate and epoch ``e >= N`` uses ``lr * exp(-lr_decay_rate * (e - N + 1))`` (PRiSM's Keras
  LearningRateScheduler). ``steps_per_epoch`` is one number or one per epoch (the
  pipeline's ``windows_per_epoch``), needed only when decaying.
  """
  t = config.train
  lr0, after, rate = float(t.learning_rate), int(t.reduce_learning_rate_after), float(t.lr_decay_rate)
  if after <= 0:
    return optax.constant_schedule(lr0)
  if steps_per_epoch is None:
    raise ValueError('config.train.reduce_learning_rate_after > 0 decays per epoch; pass '
                     'steps_per_epoch (the number of training windows per epoch).')
  if np.ndim(steps_per_epoch) == 0:
    per_epoch = int(steps_per_epoch)

    def epoch_of(count):
      return count // max(per_epoch, 1)
  else:
    ends = jnp.asarray(np.cumsum(np.asarray(steps_per_epoch, np.int64)), jnp.int32)

    def epoch_of(count):
      return jnp.searchsorted(ends, count, side='right')

  def schedule(count):
    decays = jnp.maximum(epoch_of(count) - after + 1, 0).astype(jnp.float32)
    return lr0 * jnp.exp(-rate * decays)
  return schedule


def make_optimizer(config: ml_collections.ConfigDict,
                   steps_per_epoch: StepsPerEpoch = None) -> optax.GradientTransformation:
  """Global-norm clipping (``clip_norm``; 0 disables) then adam, sgd or rmsprop.

  PRiSM's Keras optimizers: Adam with ``adam_eps``; SGD with ``momentum``; RMSprop with
  ``momentum``, rho 0.9 and eps 1e-5 inside the square root.
  """
  t = config.train
  lr = learning_rate_schedule(config, steps_per_epoch)
  if t.optimizer == 'adam':
    opt = optax.adam(lr, eps=float(t.adam_eps))
  elif t.optimizer == 'sgd':
    opt = optax.sgd(lr, momentum=float(t.momentum) or None)
  elif t.optimizer == 'rmsprop':
    opt = optax.rmsprop(lr, decay=0.9, eps=RMSPROP_EPS, momentum=float(t.momentum) or None,
                        eps_in_sqrt=True)
  else:
    raise ValueError(f'config.train.optimizer={t.optimizer!r}; use one of {OPTIMIZERS}.')
  if t.clip_norm and t.clip_norm > 0:
    opt = optax.chain(optax.clip_by_global_norm(float(t.clip_norm)), opt)
  return opt


# ---------------------------------------------------------------------------------------
# Train state
# ---------------------------------------------------------------------------------------

@flax.struct.dataclass
class TrainState:
  """Everything the update step reads and writes (the RNN carry travels beside it)."""
  step: jax.Array  # int32 scalar: updates done.
  params: Any
  opt_state: Any
  rng: jax.Array  # uint32[2] raw key; dropout of step s uses fold_in(rng, s).
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def create_train_state(config: ml_collections.ConfigDict, rng: jax.Array, params: Any = None,
                       steps_per_epoch: StepsPerEpoch = None) -> TrainState:
  """A fresh state: new parameters from ``rng`` unless ``params`` is given; fresh optimizer."""
  model = model_lib.from_config(config.model)
  if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
    rng = jax.random.key_data(rng)
  init_rng, state_rng = jax.random.split(rng)
  if params is None:
    params = model_lib.init_params(model, init_rng)
  tx = make_optimizer(config, steps_per_epoch)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    rng=state_rng, tx=tx)


# ---------------------------------------------------------------------------------------
# Shardings and steps
# ---------------------------------------------------------------------------------------

def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over all (global) devices with the axis 'data'."""
  return Mesh(np.asarray(jax.devices() if devices is None else devices), (sharding.DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  """Batch-major arrays (windows, carry, masks) split by rows over the 'data' axis."""
  return NamedSharding(mesh, P(sharding.DATA_AXIS))


def make_init_carry(config: ml_collections.ConfigDict, mesh: Mesh):
  """Jitted ``params -> carry`` for the global batch (learned h0 if ``learn_h0``)."""
  model = model_lib.from_config(config.model)
  batch_size = int(config.train.batch_size)

  def init_carry(params):
    return model.apply({'params': params}, batch_size, method=model_lib.SampleRNN.initial_carry)
  return jax.jit(init_carry, in_shardings=replicated(mesh), out_shardings=data_sharded(mesh))


def _reset(model, params, carry, reset_B):
  initial = model.apply({'params': params}, reset_B.shape[0],
                        method=model_lib.SampleRNN.initial_carry)
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
      new_carry, logits = model.apply({'params': params}, x_BxL, start, deterministic=False,
                                      rngs={'dropout': dropout_rng})
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
  return jax.jit(step, in_shardings=(rep, dat, dat), out_shardings=(rep, dat, rep),
                 donate_argnums=(0, 1))


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
  return jax.jit(step, in_shardings=(rep, dat, dat), out_shardings=(dat, rep),
                 donate_argnums=(1,))


@jax.jit
def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)]))


def global_batch(mesh: Mesh, batch: dict, keys=('x', 'reset')) -> dict:
  """This host's rows of a pipeline batch as global arrays split over 'data'.

  The pipeline's scalar 'reset' becomes one flag per row.
  """
  sharding = data_sharded(mesh)
  rows = batch['x'].shape[0]
  out = {}
  for k in keys:
    v = np.asarray(batch[k])
    if k == 'reset':
      v = np.broadcast_to(v, (rows,))
    out[k] = jax.make_array_from_process_local_data(sharding, np.ascontiguousarray(v))
  return out


def evaluate(eval_step, init_carry, params, val_dataset, mesh: Mesh) -> dict:
  """One pass over ``val_dataset``: ``{'val_loss', 'val_bits_per_sample', 'val_accuracy'}``."""
  carry, total = init_carry(params), None
  for batch in val_dataset:
    carry, sums = eval_step(params, carry, global_batch(mesh, batch, ('x', 'reset', 'mask')))
    total = sums if total is None else jax.tree.map(jnp.add, total, sums)
  if total is None:
    return {}
  return {f'val_{k}': v for k, v in metrics_lib.from_sums(jax.device_get(total)).items()}


# ---------------------------------------------------------------------------------------
# Reporting: stdout (or a tqdm bar on a terminal), metrics.jsonl, TensorBoard
# ---------------------------------------------------------------------------------------

class Reporter:
  """The one logging path; only process 0 writes."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, resumed_step: int = 0):
    self.active = jax.process_index() == 0
    self.tty = sys.stdout.isatty()
    self.samples_per_step = int(config.train.batch_size) * int(config.data.seq_len)
    self.sample_rate = int(config.data.sample_rate)
    self._bar = None
    self._jsonl = self._tb = None
    self._step_times = []  # Seconds of this process's first steps, for the time estimate.
    if self.active:
      path = os.path.join(workdir, 'metrics.jsonl')
      drop_records_after(path, resumed_step)
      self._jsonl = open(path, 'a')
      try:
        import tensorboardX
        self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'))
      except ImportError:
        logging.warning('tensorboardX is not installed; no TensorBoard event files.')

  def _write(self, record: dict, prefix: str):
    self._jsonl.write(json.dumps(record) + '\n')
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in record.items():
        if k not in ('step', 'epoch') and isinstance(v, (int, float)):
          self._tb.add_scalar(f'{prefix}/{k}', v, record['step'])

  def step(self, step: int, epoch: int, num_epochs: int, in_epoch: int, epoch_steps: int,
           metrics: dict, sec_per_step: float, log: bool):
    if not self.active:
      return
    self._step_times.append(sec_per_step)
    if len(self._step_times) == ESTIMATE_AFTER_STEPS + 1:
      # The first step compiles; the next ones say what an epoch will cost.
      self.message(time_estimate(float(np.median(self._step_times[1:])), epoch_steps,
                                 num_epochs - epoch + (1 - in_epoch / max(epoch_steps, 1))))
    if self.tty:
      if self._bar is None:
        from tqdm import tqdm
        self._bar = tqdm(total=epoch_steps, initial=in_epoch - 1, desc=f'Epoch {epoch}/{num_epochs}',
                         dynamic_ncols=True, leave=False)
      self._bar.update(1)
      self._bar.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['accuracy']:.3f}",
                            refresh=False)
    if not log:
      return
    samples_per_sec = self.samples_per_step / sec_per_step if sec_per_step > 0 else float('nan')
    record = {'step': step, 'epoch': epoch, **{k: float(v) for k, v in metrics.items()},
              'sec_per_step': sec_per_step, 'samples_per_sec': samples_per_sec}
    self._write(record, 'train')
    if not self.tty:
      print(f"Epoch {epoch}/{num_epochs}, Step {in_epoch}/{epoch_steps} ({step}), "
            f"Loss: {metrics['loss']:.4f}, Bits/sample: {metrics['bits_per_sample']:.4f}, "
            f"Accuracy: {100 * metrics['accuracy']:.2f}%, {sec_per_step:.3f} sec/step, "
            f"{samples_per_sec:,.0f} samples/s", flush=True)

  def epoch(self, step: int, epoch: int, num_epochs: int, metrics: dict, seconds: float):
    if not self.active:
      return
    self.close_bar()
    self._write({'step': step, 'epoch': epoch, **metrics}, 'epoch')
    parts = [f'{k}: {v:.4f}' for k, v in metrics.items()]
    print(f'Epoch {epoch}/{num_epochs} done in {seconds:.1f} s at step {step}; ' + ', '.join(parts),
          flush=True)

  def evaluation(self, step: int, epoch: int, metrics: dict):
    if self.active and metrics:
      self._write({'step': step, 'epoch': epoch, **metrics}, 'val')

  def audio(self, tag: str, audio_N: np.ndarray, step: int):
    if self.active and self._tb is not None:
      self._tb.add_audio(tag, audio_N, step, sample_rate=self.sample_rate)

  def message(self, text: str):
    """A line for people, printed without breaking the progress bar."""
    if not self.active:
      return
    if self._bar is not None:
      self._bar.write(text)
    else:
      print(text, flush=True)

  def close_bar(self):
    if self._bar is not None:
      self._bar.close()
      self._bar = None

  def close(self):
    self.close_bar()
    if self._jsonl is not None:
      self._jsonl.close()
    if self._tb is not None:
      self._tb.close()


# Steps timed (after the compiling first one) before the time per epoch is estimated.
ESTIMATE_AFTER_STEPS = 5
# An epoch longer than this on a CPU gets a hint towards the smaller configs.
_SLOW_CPU_EPOCH_SECONDS = 600


def _duration(seconds: float) -> str:
  if seconds < 10:
    return f'{seconds:.1f} s'
  if seconds < 120:
    return f'{seconds:.0f} s'
  if seconds < 7200:
    return f'{seconds / 60:.0f} min'
  return f'{seconds / 3600:.1f} h'


def time_estimate(sec_per_step: float, steps_per_epoch: int, epochs_left: float) -> str:
  """One line: time per epoch and for the rest of the run; on a slow CPU, what to try."""
  epoch_sec = sec_per_step * steps_per_epoch
  text = (f'Estimated {_duration(epoch_sec)} per epoch ({sec_per_step:.3g} s/step x '
          f'{steps_per_epoch} steps), {_duration(epoch_sec * epochs_left)} for the rest of '
          f'the run ({epochs_left:.1f} epochs; validation not counted).')
  if jax.default_backend() == 'cpu' and epoch_sec > _SLOW_CPU_EPOCH_SECONDS:
    text += (' On a CPU, try a smaller model: --config=configs/demo.py, or '
             '--config.model.dim=256 --config.train.batch_size=16.')
  return text


def drop_records_after(path: str, step: int) -> None:
  """Keeps the records of ``metrics.jsonl`` up to ``step``: a resumed run writes the rest.

  Steps after the checkpoint a run resumes from were logged by a run that was killed;
  they are done again, and would otherwise appear twice.
  """
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  kept = []
  for line in lines:
    try:
      if json.loads(line).get('step', 0) <= step:
        kept.append(line)
    except ValueError:
      pass  # A line cut short by a kill.
  if len(kept) != len(lines):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      f.writelines(kept)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------
# In-training generation
# ---------------------------------------------------------------------------------------

def _host_local(tree):
  """One device's copy of replicated arrays (what a single-host sampler can use)."""
  return jax.tree.map(lambda a: a.addressable_data(0) if isinstance(a, jax.Array) else a, tree)


def generate_clips(params, config: ml_collections.ConfigDict, out_dir: str, run_id: str,
                   epoch: int, rng) -> list:
  """``max_generate_per_epoch`` clips of ``output_file_dur`` s as PRiSM names them.

  ``ID_e=EPOCH_t=TEMP.wav``, or ``ID_e=EPOCH(i)_t=TEMP.wav`` for several clips;
  temperatures as PRiSM (the last one repeats). Returns ``[(path, float audio)]``.
  """
  # Generation only; generate.py holds PRiSM's temperature padding and file naming.
  from samplernn_jax import audio_io, clips as generate, quantization, sampler
  g = config.generate
  count = int(g.max_generate_per_epoch)
  if count <= 0:
    return []
  temps = generate.pad_temperatures(list(g.temperatures), count)
  num_samples = max(1, int(round(float(g.output_file_dur) * int(config.data.sample_rate))))
  levels_BxN = sampler.generate(_host_local(params), config.model, num_samples, temps, rng,
                                chunk_size=int(g.chunk_size))
  os.makedirs(out_dir, exist_ok=True)
  paths = generate.output_paths(os.path.join(out_dir, f'{run_id}.wav'), epoch, temps)
  clips = []
  for levels_N, path in zip(levels_BxN, paths):
    audio_N = np.asarray(quantization.decode(levels_N, config.model.q_type, config.model.q_levels),
                         np.float32)
    audio_io.write_wav_atomic(path, audio_N, int(config.data.sample_rate))
    clips.append((path, audio_N))
  return clips


# ---------------------------------------------------------------------------------------
# Resume helpers
# ---------------------------------------------------------------------------------------

def _loop_state(epoch=0, best=math.nan, bad_epochs=0, sums=(0.0, 0.0, 0)) -> dict:
  """Host bookkeeping saved in the 'train' item: epochs done, early stopping, epoch sums."""
  return {'epoch': np.asarray(epoch, np.int64), 'best': np.asarray(best, np.float64),
          'bad_epochs': np.asarray(bad_epochs, np.int64),
          'loss_sum': np.asarray(sums[0], np.float64), 'accuracy_sum': np.asarray(sums[1], np.float64),
          'epoch_steps': np.asarray(sums[2], np.int64)}


def _abstract(tree, sharding):
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)


def _merge_model_config(config: ml_collections.ConfigDict, saved: ml_collections.ConfigDict):
  """The architecture comes from the checkpoint; dropout and matmul dtype from ``config``."""
  model = ml_collections.ConfigDict(saved.model.to_dict())
  for k in ('rnn_dropout', 'dtype'):
    if k in config.model:
      model[k] = config.model[k]
  mine = checkpoint_lib.config_to_json(config.model)
  theirs = checkpoint_lib.config_to_json(model)
  diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
  if diff:
    logging.warning('Using the checkpoint\'s model config; these fields differ from the given '
                    'config and are ignored: %s', {k: (mine.get(k), theirs.get(k)) for k in diff})
  config = ml_collections.ConfigDict(config.to_dict())
  config.model = model
  return config


DATA_FILES = 'data_files.json'  # What the last start of a run trained on.


def _note_data_change(workdir: str, datasets, resumed: bool) -> None:
  """Warns when a resumed run's files differ from its last start's: the epoch is re-planned.

  The data position in a checkpoint counts windows of the plan made from the file list, so
  after files are added, removed or skipped the run goes on over a different order.
  """
  files = {'train': [[p, os.path.getsize(p)] for p in datasets.train_files],
           'val': [[p, os.path.getsize(p)] for p in datasets.val_files]}
  path = os.path.join(workdir, DATA_FILES)
  try:
    with open(path) as f:
      before = json.load(f)
  except (OSError, ValueError):
    before = None
  if resumed and before is not None and before != files:
    logging.warning('The training files changed since this run last started (%d -> %d '
                    'training, %d -> %d validation files); the epochs are re-planned over '
                    'the new files, so the resumed run does not continue the old order.',
                    len(before.get('train', ())), len(files['train']),
                    len(before.get('val', ())), len(files['val']))
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(files, f)
  os.replace(tmp, path)


def _finished(loop: dict, num_epochs: int, t: ml_collections.ConfigDict) -> Optional[str]:
  """Why a resumed run has nothing left to do (and how to train on), or None."""
  epochs_done = int(loop['epoch'])
  if epochs_done >= num_epochs:
    more = num_epochs + max(num_epochs // 2, 1)
    return (f'training is finished ({epochs_done} of {num_epochs} epochs done). To train '
            f'longer, run again with --config.train.num_epochs={more} (or any number above '
            'the current one).')
  patience = int(t.early_stopping_patience)
  if patience > 0 and int(loop['bad_epochs']) >= patience and not int(loop['epoch_steps']):
    return (f'training stopped early after {epochs_done} epochs ({patience} epochs without '
            f'improvement of {t.monitor}). To train on, run again with '
            f'--config.train.early_stopping_patience=0 (never stop) or a larger value.')
  return None


def _restore_newest_intact(manager, workdir: str, steps, restore, explicit: bool):
  """``(step, restore(step))`` for the newest of ``steps`` that restores, else ``(None, None)``.

  A damaged checkpoint is moved to ``workdir/broken_checkpoints`` with a warning naming it,
  and the next older one is tried; one the user named (``explicit``) raises instead.
  """
  for step in sorted(steps, reverse=True):
    try:
      return step, restore(step)
    except Exception as e:  # pylint: disable=broad-except
      # Orbax raises bare Exceptions, KeyErrors and JSON errors for damaged files.
      error = checkpoint_lib.unreadable(manager, step, e)
      if explicit:
        raise error from None
      if jax.process_index() == 0:  # One host moves it; the others only skip it.
        moved = checkpoint_lib.set_aside(manager, step, workdir)
        logging.warning('%s. Moved it to %s; trying the next older checkpoint.', error, moved)
  if steps:
    logging.warning('No intact checkpoint in %s; training from scratch.', manager.directory)
  return None, None


def _install_signal_handlers(stop: dict):
  """SIGINT/SIGTERM ask the loop to checkpoint and return; a second one acts as usual."""
  if threading.current_thread() is not threading.main_thread():
    return {}
  previous = {}

  def handler(signum, frame):
    stop['signal'] = signum
    signal.signal(signum, previous[signum])
  for s in (signal.SIGINT, signal.SIGTERM):
    previous[s] = signal.signal(s, handler)
  return previous


# ---------------------------------------------------------------------------------------
# train_and_evaluate
# ---------------------------------------------------------------------------------------

def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       data_dir: Optional[str] = None, resume_from: Optional[int] = None,
                       on_eval: Optional[Callable[[int, dict], None]] = None) -> dict:
  """Trains (or resumes training) in ``workdir``; returns the last epoch's metrics.

  ``on_eval(step, val_metrics)`` is called after each validation (a hyper-parameter search
  reports it); an exception it raises (e.g. ``optuna.TrialPruned``) stops the run after that
  step's bookkeeping and a checkpoint, and is then raised from here.

  Without ``data_dir`` the demo corpus is synthesized into ``workdir/demo_corpus``. An
  existing checkpoint in ``workdir`` is resumed (the latest, or ``resume_from``; newer ones
  are then deleted); a parameters-only one (e.g. a PRiSM import) starts a fresh optimizer.
  A damaged latest checkpoint is moved to ``workdir/broken_checkpoints`` with a warning
  naming it, and the newest intact one is resumed. A run with nothing left to do (all
  epochs done, or stopped early) says so and how to train on, and returns ``{}``.

  Raises:
    FloatingPointError: a non-finite loss or parameters; the last checkpoint stays good.
    FileNotFoundError / ValueError: missing data, bad config, missing ``resume_from``.
  """
  from samplernn_jax import input_pipeline  # grain; training only.
  config_lib.validate(config)  # Before anything is written: a typo leaves no workdir behind.
  workdir = os.path.abspath(workdir)
  if data_dir is not None:
    input_pipeline.find_audio_files(data_dir)  # A missing or empty folder: before any write.
  os.makedirs(workdir, exist_ok=True)
  t = config.train
  manager = checkpoint_lib.make_manager(workdir, checkpoint_lib.training_options(t))
  run_id = os.path.basename(workdir.rstrip('/')) or 'run'

  # ----- Resume point ---------------------------------------------------------------
  steps = manager.all_steps()
  if resume_from is not None and resume_from not in steps:
    raise FileNotFoundError(f'--resume_from={resume_from}: no such checkpoint in {manager.directory}; '
                            f'available: {sorted(steps)}.')
  restore_step, saved_config = _restore_newest_intact(
      manager, workdir, [resume_from] if resume_from is not None else steps,
      lambda s: checkpoint_lib.restore_config(manager, s), resume_from is not None)
  if restore_step is not None:
    config = _merge_model_config(config, saved_config)
    for s in [s for s in steps if s > restore_step and s in manager.all_steps()]:
      logging.warning('Deleting checkpoint %d, newer than --resume_from=%d.', s, restore_step)
      manager.delete(s)
  config_lib.validate(config)
  if jax.process_index() == 0:
    checkpoint_lib.save_config(workdir, config)

  # ----- Input ----------------------------------------------------------------------
  if data_dir is None:
    from samplernn_jax import demo_corpus
    data_dir = os.path.join(workdir, 'demo_corpus')
    if not os.path.isdir(data_dir) or not os.listdir(data_dir):
      logging.info('No --data_dir: synthesizing the demo corpus into %s.', data_dir)
      demo_corpus.synthesize(data_dir, sample_rate=int(config.data.sample_rate))
  datasets = input_pipeline.make_datasets(config, data_dir)
  if jax.process_index() == 0:
    _note_data_change(workdir, datasets, resumed=restore_step is not None)
    # What the gallery and generate --keep score clips against.
    clip_score.store_training_profile(workdir, data_dir, config)
  windows_per_epoch = datasets.windows_per_epoch
  num_epochs = len(windows_per_epoch)
  if not sum(windows_per_epoch):
    raise ValueError(f'{data_dir!r}: no training window; files must be longer than '
                     f'config.data.seq_len={config.data.seq_len} samples.')
  train_iter = iter(datasets.train)

  # ----- Model, state and shardings -------------------------------------------------
  mesh = make_mesh()
  if t.batch_size % mesh.size:
    raise ValueError(f'config.train.batch_size={t.batch_size} does not split over '
                     f'{mesh.size} devices; use a multiple of {mesh.size}.')
  rep = replicated(mesh)
  train_step = make_train_step(config, mesh)
  eval_step = make_eval_step(config, mesh)
  init_carry = make_init_carry(config, mesh)
  rng = jax.random.PRNGKey(int(t.seed))
  make_state = lambda params=None: create_train_state(config, rng, params, windows_per_epoch)
  abstract_state = jax.eval_shape(make_state)
  loop = _loop_state()

  abstract_params = _abstract(abstract_state.params, rep)
  abstract_train = {'step': _abstract(abstract_state.step, rep),
                    'opt_state': _abstract(abstract_state.opt_state, rep),
                    'rng': _abstract(abstract_state.rng, rep),
                    'carry': _abstract(jax.eval_shape(init_carry, abstract_state.params),
                                       data_sharded(mesh)),
                    'loop': loop}

  def restore(s):
    if checkpoint_lib.has_train_state(manager, s):
      return checkpoint_lib.restore_training(manager, s, abstract_params, abstract_train,
                                             train_iter)
    return checkpoint_lib.restore_params_into(manager, s, abstract_params), None

  if restore_step is not None:
    restore_step, restored = _restore_newest_intact(
        manager, workdir, [s for s in manager.all_steps() if s <= restore_step]
        if resume_from is None else [restore_step], restore, resume_from is not None)
  if restore_step is None:
    train_iter = iter(datasets.train)  # A failed restore may have moved it.
    state = jax.jit(make_state, out_shardings=rep)()
    carry = init_carry(state.params)
  elif restored[1] is not None:
    params, train = restored
    state = TrainState(step=train['step'], params=params, opt_state=train['opt_state'],
                       rng=train['rng'], tx=abstract_state.tx)
    carry, loop = train['carry'], {k: np.asarray(v) for k, v in train['loop'].items()}
    logging.info('Resumed from checkpoint %d (%d of %d epochs done, %d steps into epoch %d).',
                 restore_step, int(loop['epoch']), num_epochs, int(loop['epoch_steps']),
                 min(int(loop['epoch']) + 1, num_epochs))
  else:
    state = jax.jit(make_state, in_shardings=rep, out_shardings=rep)(restored[0])
    state = state.replace(step=jnp.asarray(restore_step, jnp.int32))
    carry = init_carry(state.params)
    logging.info('Starting from the parameters of checkpoint %d with a fresh optimizer.',
                 restore_step)

  # ----- Monitoring -----------------------------------------------------------------
  monitor = t.monitor
  if monitor.startswith('val_') and datasets.val is None:
    logging.warning('No validation files (val_frac=%s); monitoring %r instead of %r.',
                    config.data.val_frac, monitor[4:], monitor)
    monitor = monitor[4:]
  mode = checkpoint_lib.MONITORS[monitor]
  improved = lambda v, best: math.isnan(best) or (v < best if mode == 'min' else v > best)
  reporter = Reporter(workdir, config, restore_step or 0)
  gen_rng = jax.random.PRNGKey(int(t.seed) + 1)
  stop = {'signal': None}
  previous_handlers = _install_signal_handlers(stop)
  lr_at = learning_rate_schedule(config, windows_per_epoch)
  # Clips come from one process's sampler; on several processes the others would wait at
  # the next step's collectives for as long as it takes, so it is off there.
  clips_here = jax.process_count() == 1 and int(config.generate.max_generate_per_epoch) > 0
  if jax.process_count() > 1 and int(config.generate.max_generate_per_epoch) > 0:
    logging.info('In-training generation is off on %d processes (it would stall the others); '
                 'generate from the checkpoints with samplernn-generate.', jax.process_count())

  step = int(jax.device_get(state.step))
  last_saved = restore_step
  last_metrics: dict = {}

  def save(metrics=None):
    nonlocal last_saved
    if not bool(_all_finite(state.params)):
      raise FloatingPointError(
          f'Non-finite parameters at step {step}; not saving. The last good checkpoint is '
          f'{last_saved} in {manager.directory}.')
    checkpoint_lib.save_training(
        manager, step, state.params,
        {'step': state.step, 'opt_state': state.opt_state, 'rng': state.rng, 'carry': carry,
         'loop': loop}, train_iter, config, metrics)
    last_saved = step

  finished = _finished(loop, num_epochs, t) if restore_step is not None else None
  if finished:
    reporter.message(f'Checkpoint {restore_step} in {manager.directory}: {finished}')
    manager.close()
    reporter.close()
    for s, h in previous_handlers.items():
      signal.signal(s, h)
    return {}

  # ----- Loop -----------------------------------------------------------------------
  pending = None  # The step dispatched last: (step, epoch, metrics on device).
  t_last = time.perf_counter()
  epoch_start = time.perf_counter()

  def drain():
    """Reads the pending step's metrics (the only host sync per step) and reports them."""
    nonlocal pending, t_last
    if pending is None:
      return
    s, e, m = pending
    pending = None
    m = {k: float(v) for k, v in jax.device_get(m).items()}
    now = time.perf_counter()
    sec, t_last = now - t_last, now
    if not math.isfinite(m['loss']):
      raise FloatingPointError(
          f'Non-finite loss {m["loss"]} at step {s} (epoch {e + 1}); stopping. The last good '
          f'checkpoint is {last_saved} in {manager.directory}. Try a lower '
          f'config.train.learning_rate or config.train.clip_norm.')
    loop['loss_sum'] = loop['loss_sum'] + m['loss']
    loop['accuracy_sum'] = loop['accuracy_sum'] + m['accuracy']
    loop['epoch_steps'] = loop['epoch_steps'] + 1
    n = int(loop['epoch_steps'])
    reporter.step(s, e + 1, num_epochs, n, windows_per_epoch[e], m, sec,
                  log=t.log_every_steps > 0 and (s % t.log_every_steps == 0 or n == 1))

  try:
    while True:
      batch = next(train_iter, None)
      if batch is None:
        break
      epoch = int(batch['epoch'])
      state, carry, metrics = train_step(state, carry, global_batch(mesh, batch))
      step += 1
      drain()  # Step - 1's metrics, while this step runs.
      pending = (step, epoch, metrics)
      epoch_end = bool(batch['epoch_end'])
      evaluate_now = datasets.val is not None and (
          epoch_end or (t.eval_every_steps > 0 and step % t.eval_every_steps == 0))
      save_steps = t.checkpoint_every_steps > 0 and step % t.checkpoint_every_steps == 0
      if not (epoch_end or evaluate_now or save_steps or stop['signal']):
        continue
      drain()
      val_metrics = {}
      if evaluate_now:
        val_metrics = evaluate(eval_step, init_carry, state.params, datasets.val, mesh)
        reporter.evaluation(step, epoch + 1, val_metrics)
        if on_eval is not None:
          try:
            on_eval(step, val_metrics)
          except Exception as e:  # Raised once the checkpoint below is written.
            stop['raised'] = e
      if epoch_end:
        n = max(int(loop['epoch_steps']), 1)
        last_metrics = {'loss': float(loop['loss_sum']) / n,
                        'accuracy': float(loop['accuracy_sum']) / n, **val_metrics,
                        'learning_rate': float(lr_at(step - 1))}
        reporter.epoch(step, epoch + 1, num_epochs, last_metrics, time.perf_counter() - epoch_start)
        epoch_start = time.perf_counter()
        value = last_metrics[monitor]
        is_best = improved(value, float(loop['best']))
        loop = _loop_state(epoch + 1, value if is_best else loop['best'],
                           0 if is_best else int(loop['bad_epochs']) + 1)
        patience = int(t.early_stopping_patience)
        early_stop = patience > 0 and int(loop['bad_epochs']) >= patience
        last_epoch = epoch + 1 == num_epochs
        if (epoch + 1) % max(int(t.checkpoint_every_epochs), 1) == 0 or early_stop or last_epoch:
          save({k: v for k, v in last_metrics.items() if k != 'learning_rate'})
          if clips_here and (t.checkpoint_policy == 'Always' or is_best):
            clips = generate_clips(state.params, config, os.path.join(workdir, 'generated'),
                                   run_id, epoch + 1, jax.random.fold_in(gen_rng, step))
            for path, audio in clips:
              logging.info('Generated %s', path)
              reporter.audio(f'generated/{os.path.basename(path)}', audio, step)
            if clips:
              gallery.refresh(workdir)  # The run's page lists the new clips.
        if early_stop:
          logging.info('Early stopping: %r has not improved for %d epochs.', monitor, patience)
          break
      elif save_steps or stop['signal']:
        save()
      t_last = time.perf_counter()  # Validation and saving are not a step's time.
      if stop['signal']:
        logging.info('Signal %d: saved checkpoint %d; exiting.', stop['signal'], step)
        break
      if stop.get('raised'):
        break
    drain()
    if last_saved != step:
      save()
    if stop.get('raised'):
      raise stop['raised']
  finally:
    manager.wait_until_finished()
    manager.close()
    reporter.close()
    for s, h in previous_handlers.items():
      signal.signal(s, h)
  return last_metrics
