"""The training loop: ``train_and_evaluate(config, workdir, data_dir)``.

It reads top to bottom as a list of stages (big_vision's way): the resume point, input,
the compiled steps, the train state (restored or fresh), then the loop. The loop runs one
jitted step per window (the RNN carry goes from window to window and is reset on each new
batch of files), and at every epoch end validates, stops early and checkpoints. It runs
under ``jax.transfer_guard('disallow')``: each copy between host and devices in it is
written out, so a hidden one is an error instead of a silent slowdown.

The PRiSM semantics kept here (train.py / callbacks.py there): checkpoint policy
'Always'/'Best' by ``monitor``, early stopping after ``early_stopping_patience`` epochs
without improvement. The optimizer and its decay are in ``train_state.py``, the steps in
``steps.py``, the logs in ``reporting.py``.

The loop knows nothing of what stands around it: a caller hands it ``Hooks``. The commands
compose the listening room's (``listening.training_hooks``: the training audio's profile at
the start, clips and the run's page after checkpoints); a search adds its ``on_eval``.
"""

import contextlib
import dataclasses
import errno
import json
import math
import os
import shutil
import signal
import threading
from typing import Any, Callable, NamedTuple, Optional

from absl import logging
import jax
from jax.sharding import Mesh
import ml_collections
import numpy as np
import optax

from samplernn_jax import checkpoint as checkpoint_lib
from samplernn_jax import config as config_lib
from samplernn_jax import files as files_lib
from samplernn_jax import reporting
from samplernn_jax import steps as steps_lib
from samplernn_jax import train_state as train_state_lib
from samplernn_jax import workdir as workdir_lib


@dataclasses.dataclass(frozen=True)
class Started:
  """What ``Hooks.on_start`` is told once the run's data and config are settled."""

  config: ml_collections.ConfigDict  # The config trained with (a resumed run's architecture).
  workdir: str  # Absolute.
  data_dir: str
  train_files: tuple  # The training files, as the pipeline found them.


@dataclasses.dataclass(frozen=True)
class Checkpointed:
  """What ``Hooks.on_checkpoint`` is told after an epoch's checkpoint is written."""

  config: ml_collections.ConfigDict
  workdir: str
  data_dir: str  # The training data, as the command named it (trusted, unlike workdir files).
  step: int
  epoch: int  # Epochs done.
  improved: bool  # Whether the monitored metric improved this epoch (the 'Best' policy).
  params: Any  # The parameters on the devices (``steps.host_local`` gives the host copy).
  reporter: reporting.Reporter  # E.g. for TensorBoard audio.


@dataclasses.dataclass(frozen=True)
class Hooks:
  """What a caller adds around the loop; each is optional and runs with transfers allowed.

  * ``on_start(Started)``: once, before the first step (on every process);
  * ``on_eval(step, val_metrics)``: after each validation. An exception it raises (e.g.
    ``optuna.TrialPruned``) stops the run after that step's bookkeeping and a checkpoint, and
    is then raised from ``train_and_evaluate``;
  * ``on_checkpoint(Checkpointed)``: after each epoch's checkpoint.
  """

  on_start: Optional[Callable[[Started], None]] = None
  on_eval: Optional[Callable[[int, dict], None]] = None
  on_checkpoint: Optional[Callable[[Checkpointed], None]] = None


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  data_dir: str,
  *,
  resume_from: Optional[int] = None,
  hooks: Hooks = Hooks(),
) -> dict:
  """Trains (or resumes training) in ``workdir`` on ``data_dir``; returns the last epoch's
  metrics. ``hooks``: what the caller adds (see ``Hooks``).

  An existing checkpoint in ``workdir`` is resumed (the latest, or ``resume_from``; newer ones
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
  input_pipeline.find_audio_files(data_dir)  # A missing or empty folder: before any write.
  # A new workdir that setup refuses (too few files, say) is removed: nothing is left.
  with _removed_if_setup_fails(workdir):
    os.makedirs(workdir, exist_ok=True)
    manager = checkpoint_lib.make_manager(workdir, checkpoint_lib.training_options(config.train))

    # ----- Resume point: its checkpoint fixes the architecture ------------------------------
    restore_step, config = _resume_point(manager, workdir, config, resume_from)
    config_lib.validate(config)

    # ----- Input ----------------------------------------------------------------------------
    datasets = _datasets(config, data_dir)
    if hooks.on_start is not None:
      hooks.on_start(
        Started(
          config=config, workdir=workdir, data_dir=data_dir, train_files=tuple(datasets.train_files)
        )
      )

    # ----- Model, shardings and compiled steps ----------------------------------------------
    programs = _make_steps(config)

    # ----- Train state: restored, or fresh --------------------------------------------------
    run, restore_step = _start(
      config, manager, workdir, programs, datasets, restore_step, explicit=resume_from is not None
    )
    # Written once the restore succeeded: a run refused for another config changes nothing.
    if jax.process_index() == 0:
      checkpoint_lib.save_config(workdir, config)
      _note_data_change(workdir, datasets, resumed=restore_step is not None)

    # ----- Monitoring and reporting ---------------------------------------------------------
    loop = _make_loop(
      config,
      workdir,
      data_dir,
      manager,
      programs,
      datasets,
      hooks,
      resumed_step=restore_step or 0,
    )
  finished = (
    _finished(run.progress, loop.num_epochs, config.train) if restore_step is not None else None
  )
  if finished:
    loop.reporter.message(f'Checkpoint {restore_step} in {manager.directory}: {finished}')
    manager.close()
    loop.reporter.close()
    return {}

  # ----- Loop -----------------------------------------------------------------------------
  stop = _Stop()
  previous_handlers = _install_signal_handlers(stop)
  try:
    try:
      with jax.transfer_guard('disallow'):
        return _train_loop(loop, run, stop)
    finally:
      for s, h in previous_handlers.items():
        signal.signal(s, h)
      try:
        manager.wait_until_finished()
        manager.close()
      finally:
        loop.reporter.close()
  except Exception as e:  # pylint: disable=broad-except
    if not _disk_full(e):
      raise
    raise OSError(errno.ENOSPC, _disk_full_message(workdir, run)) from None


def _disk_full(error: BaseException) -> bool:
  """Whether ``error`` or one of its causes is a full disk (Orbax and TensorStore wrap it)."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    if "os_error_code='28'" in str(error) or 'No space left on device' in str(error):
      return True
    error = error.__cause__ or error.__context__
  return False


def _disk_full_message(workdir: str, run: '_Run') -> str:
  """One line: where, how much a checkpoint needs against what is free, and what to do."""
  arrays = jax.tree.leaves((run.state.params, run.state.opt_state, run.carry))
  need = sum(int(getattr(a, 'nbytes', 0)) for a in arrays)
  try:
    free = f', {shutil.disk_usage(workdir).free / 1e6:,.0f} MB free'
  except OSError:
    free = ''
  return (
    f'{workdir}: no space left on device to save a checkpoint (about {need / 1e6:,.0f} MB '
    f'each{free}); run again once there is room: it resumes from the last complete one'
  )


@contextlib.contextmanager
def _removed_if_setup_fails(workdir: str):
  """Removes ``workdir`` when the block raises and the folder did not exist before it."""
  existed = os.path.exists(workdir)
  try:
    yield
  except BaseException:
    if not existed:
      shutil.rmtree(workdir, ignore_errors=True)
    raise


# ---------------------------------------------------------------------------------------
# What the loop reads, and what it changes
# ---------------------------------------------------------------------------------------


class _Steps(NamedTuple):
  """The compiled programs (``steps.py``) over one mesh."""

  mesh: Mesh
  train: Callable  # (state, carry, batch) -> (state, carry, metrics); state, carry donated.
  eval: Callable  # (params, carry, batch) -> (carry, sums).
  init_carry: Callable  # params -> carry.


@dataclasses.dataclass(frozen=True)
class _Loop:
  """What the loop reads and never changes."""

  config: ml_collections.ConfigDict
  workdir: str
  data_dir: str
  manager: Any  # The run's ``ocp.CheckpointManager``.
  steps: _Steps
  val_data: Any  # The validation dataset, or None.
  windows_per_epoch: tuple  # Train steps of each epoch.
  reporter: reporting.Reporter
  monitor: str  # The metric of early stopping and the 'Best' policy.
  learning_rate: optax.Schedule
  hooks: Hooks

  @property
  def num_epochs(self) -> int:
    return len(self.windows_per_epoch)


@dataclasses.dataclass
class Progress:
  """The loop's host bookkeeping, saved in each checkpoint's 'train' item as 'loop'.

  Epochs done; early stopping's best monitored value and the epochs without improvement
  since; the running epoch's sums of per-step loss and accuracy over its steps so far.
  """

  epoch: int = 0
  best: float = math.nan  # NaN: no epoch ended yet.
  bad_epochs: int = 0
  loss_sum: float = 0.0
  accuracy_sum: float = 0.0
  epoch_steps: int = 0

  def add_step(self, metrics: dict) -> None:
    self.loss_sum += metrics['loss']
    self.accuracy_sum += metrics['accuracy']
    self.epoch_steps += 1

  def epoch_means(self) -> dict:
    steps = max(self.epoch_steps, 1)
    return {'loss': self.loss_sum / steps, 'accuracy': self.accuracy_sum / steps}

  def end_epoch(self, epochs_done: int, value: float, *, improved: bool) -> None:
    """An epoch ended with the monitored ``value``; the next one's sums start at zero."""
    self.best = value if improved else self.best
    self.bad_epochs = 0 if improved else self.bad_epochs + 1
    self.epoch, self.loss_sum, self.accuracy_sum, self.epoch_steps = epochs_done, 0.0, 0.0, 0

  def to_tree(self) -> dict:
    """The checkpointed form: these keys and dtypes are the format old checkpoints have."""
    return {
      'epoch': np.asarray(self.epoch, np.int64),
      'best': np.asarray(self.best, np.float64),
      'bad_epochs': np.asarray(self.bad_epochs, np.int64),
      'loss_sum': np.asarray(self.loss_sum, np.float64),
      'accuracy_sum': np.asarray(self.accuracy_sum, np.float64),
      'epoch_steps': np.asarray(self.epoch_steps, np.int64),
    }

  @classmethod
  def from_tree(cls, tree: dict) -> 'Progress':
    return cls(
      epoch=int(tree['epoch']),
      best=float(tree['best']),
      bad_epochs=int(tree['bad_epochs']),
      loss_sum=float(tree['loss_sum']),
      accuracy_sum=float(tree['accuracy_sum']),
      epoch_steps=int(tree['epoch_steps']),
    )


@dataclasses.dataclass
class _Run:
  """What the loop changes: the state and carry, the data position, the bookkeeping."""

  state: train_state_lib.TrainState
  carry: Any  # The RNN carry after the last window, split over 'data'.
  data: Any  # The training iterator; a checkpoint holds its position.
  progress: Progress
  step: int  # Updates done: the host's copy of ``state.step``.
  saved: Optional[int]  # The step of the newest checkpoint (None: none yet).
  # The step dispatched last, (step, 0-based epoch, metrics on the devices): read only after
  # the next one is dispatched, so the host waits for the devices while they work.
  pending: Optional[tuple] = None


@dataclasses.dataclass
class _Stop:
  """Why the loop should stop once this step's checkpoint is written."""

  signal: Optional[int] = None  # A SIGINT or SIGTERM.
  raised: Optional[BaseException] = None  # Hooks.on_eval's, raised after the checkpoint.


def itstime(step: int, every_n: int, total: Optional[int] = None) -> bool:
  """Whether ``step`` (counted from 1) is one of every ``every_n`` (0: none), or the last."""
  return (every_n > 0 and step % every_n == 0) or step == total


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------


def _train_loop(loop: _Loop, run: _Run, stop: _Stop) -> dict:
  """Steps until the data ends, early stopping, a signal or an ``on_eval`` exception.

  Returns the last epoch's metrics. Every transfer between host and devices here is an
  explicit one (batches in, metrics out), so it runs under ``transfer_guard('disallow')``;
  library code it calls (Orbax, the sampler, ``on_eval``) runs with transfers allowed.
  """
  t, last_metrics = loop.config.train, {}
  while (batch := next(run.data, None)) is not None:
    epoch = int(batch['epoch'])  # 0-based.
    _dispatch_step(loop, run, batch, epoch)
    epoch_end = bool(batch['epoch_end'])
    evaluate_now = loop.val_data is not None and (
      epoch_end or itstime(run.step, t.eval_every_steps)
    )
    save_now = itstime(run.step, t.checkpoint_every_steps)
    if not (epoch_end or evaluate_now or save_now or stop.signal):
      continue
    _read_pending(loop, run)
    val_metrics = _validate(loop, run, stop, epoch) if evaluate_now else {}
    if epoch_end:
      last_metrics, stop_early = _end_epoch(loop, run, epoch, val_metrics)
      if stop_early:
        break
    elif save_now or stop.signal:
      _save(loop, run)
    loop.reporter.restart_step_clock()  # Validation and saving are not a step's time.
    if stop.signal:
      logging.info('Signal %d: saved checkpoint %d; exiting.', stop.signal, run.step)
      break
    if stop.raised:
      break
  _read_pending(loop, run)
  if run.saved != run.step:
    _save(loop, run)
  if stop.raised:
    raise stop.raised
  return last_metrics


def _dispatch_step(loop: _Loop, run: _Run, batch: dict, epoch: int) -> None:
  """Dispatches one train step, then reads the step before it while this one runs."""
  run.state, run.carry, metrics = loop.steps.train(
    run.state, run.carry, steps_lib.global_batch(loop.steps.mesh, batch)
  )
  run.step += 1
  _read_pending(loop, run)
  run.pending = (run.step, epoch, metrics)


def _read_pending(loop: _Loop, run: _Run) -> None:
  """Reads the pending step's metrics (the only host sync per step) and reports them."""
  if run.pending is None:
    return
  step, epoch, metrics = run.pending
  run.pending = None
  metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
  if not math.isfinite(metrics['loss']):
    raise FloatingPointError(
      f'Non-finite loss {metrics["loss"]} at step {step} (epoch {epoch + 1}); stopping. The '
      f'last good checkpoint is {run.saved} in {loop.manager.directory}. Try a lower '
      f'config.train.learning_rate or config.train.clip_norm.'
    )
  run.progress.add_step(metrics)
  in_epoch, every = run.progress.epoch_steps, loop.config.train.log_every_steps
  loop.reporter.step(
    step=step,
    epoch=epoch + 1,
    in_epoch=in_epoch,
    metrics=metrics,
    log=every > 0 and (itstime(step, every) or in_epoch == 1),
  )


def _validate(loop: _Loop, run: _Run, stop: _Stop, epoch: int) -> dict:
  """One pass over the validation files; reported, and handed to ``on_eval``."""
  val_metrics = steps_lib.evaluate(
    loop.steps.eval, loop.steps.init_carry, run.state.params, loop.val_data, loop.steps.mesh
  )
  loop.reporter.evaluation(run.step, epoch + 1, val_metrics)
  if loop.hooks.on_eval is not None:
    try:
      with jax.transfer_guard('allow'):  # The caller's code, not the loop's.
        loop.hooks.on_eval(run.step, val_metrics)
    except Exception as e:  # pylint: disable=broad-except
      stop.raised = e  # Raised once this step's checkpoint is written.
  return val_metrics


def _end_epoch(loop: _Loop, run: _Run, epoch: int, val_metrics: dict) -> tuple[dict, bool]:
  """The 0-based ``epoch`` ended: its report, early stopping, a checkpoint and its hook.

  Returns the epoch's metrics and whether to stop early.
  """
  t, epochs_done = loop.config.train, epoch + 1
  metrics = {
    **run.progress.epoch_means(),
    **val_metrics,
    'learning_rate': _learning_rate_at(loop, run.step),
  }
  loop.reporter.epoch(step=run.step, epoch=epochs_done, metrics=metrics)
  value = metrics[loop.monitor]
  improved = _improves(value, best=run.progress.best, mode=checkpoint_lib.MONITORS[loop.monitor])
  run.progress.end_epoch(epochs_done, value, improved=improved)
  patience = int(t.early_stopping_patience)
  stop_early = patience > 0 and run.progress.bad_epochs >= patience
  every = max(int(t.checkpoint_every_epochs), 1)
  if itstime(epochs_done, every, total=loop.num_epochs) or stop_early:
    _save(loop, run, {k: v for k, v in metrics.items() if k != 'learning_rate'})
    if loop.hooks.on_checkpoint is not None:
      with jax.transfer_guard('allow'):  # The caller's code, not the loop's.
        loop.hooks.on_checkpoint(
          Checkpointed(
            config=loop.config,
            workdir=loop.workdir,
            data_dir=loop.data_dir,
            step=run.step,
            epoch=epochs_done,
            improved=improved,
            params=run.state.params,
            reporter=loop.reporter,
          )
        )
  if stop_early:
    logging.info('Early stopping: %r has not improved for %d epochs.', loop.monitor, patience)
  return metrics, stop_early


def _improves(value: float, best: float, mode: str) -> bool:
  return math.isnan(best) or (value < best if mode == 'min' else value > best)


def _learning_rate_at(loop: _Loop, step: int) -> float:
  """The learning rate of step ``step`` (counted from 1), for the epoch's report."""
  # The schedule is jnp code: on a Python int it copies its operands to the device.
  with jax.transfer_guard('allow'):
    return float(loop.learning_rate(step - 1))


# ---------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------


def _train_item(state: train_state_lib.TrainState, carry, progress: Progress) -> dict:
  """A checkpoint's 'train' item; its keys are the on-disk format (old checkpoints resume)."""
  return {
    'step': state.step,
    'opt_state': state.opt_state,
    'rng': state.rng,
    'carry': carry,
    'loop': progress.to_tree(),
  }


def _save(loop: _Loop, run: _Run, metrics: Optional[dict] = None) -> None:
  """A checkpoint of ``run`` at its step; epoch ends pass ``metrics`` (the 'Best' policy)."""
  if not bool(jax.device_get(steps_lib.all_finite(run.state.params))):
    raise FloatingPointError(
      f'Non-finite parameters at step {run.step}; not saving. The last good checkpoint is '
      f'{run.saved} in {loop.manager.directory}.'
    )
  # Orbax copies the arrays to the host its own way (copy_to_host_async, then np.asarray):
  # library code, not the loop's to guard.
  with jax.transfer_guard('allow'):
    checkpoint_lib.save_training(
      loop.manager,
      run.step,
      run.state.params,
      _train_item(run.state, run.carry, run.progress),
      run.data,
      loop.config,
      metrics,
    )
  run.saved = run.step


# ---------------------------------------------------------------------------------------
# Setup: resume point, input, steps, state
# ---------------------------------------------------------------------------------------


def _resume_point(
  manager, workdir: str, config: ml_collections.ConfigDict, resume_from: Optional[int]
):
  """``(step, config)``: the checkpoint to resume (None: none) and the config to train with.

  The architecture comes from that checkpoint's config; checkpoints newer than it are
  deleted (``resume_from`` goes back in time).
  """
  steps = manager.all_steps()
  if resume_from is not None and resume_from not in steps:
    raise FileNotFoundError(
      f'--resume_from={resume_from}: no such checkpoint in '
      f'{manager.directory}; available: {sorted(steps)}.'
    )
  restore_step, saved_config = _restore_newest_intact(
    manager,
    workdir,
    [resume_from] if resume_from is not None else steps,
    lambda s: checkpoint_lib.restore_config(manager, s),
    explicit=resume_from is not None,
  )
  if restore_step is not None:
    config = _merge_model_config(config, saved_config)
    for s in [s for s in steps if s > restore_step and s in manager.all_steps()]:
      logging.warning('Deleting checkpoint %d, newer than --resume_from=%d.', s, restore_step)
      manager.delete(s)
  return restore_step, config


def _datasets(config: ml_collections.ConfigDict, data_dir: str):
  """The pipeline's datasets over ``data_dir``."""
  from samplernn_jax import input_pipeline  # grain; training only.

  datasets = input_pipeline.make_datasets(config, data_dir)
  if not sum(datasets.windows_per_epoch):
    raise ValueError(
      f'{data_dir!r}: no training window; files must be longer than '
      f'config.data.seq_len={config.data.seq_len} samples.'
    )
  return datasets


def _make_steps(config: ml_collections.ConfigDict) -> _Steps:
  """The jitted steps over a mesh of all devices."""
  mesh = steps_lib.make_mesh()
  if config.train.batch_size % mesh.size:
    raise ValueError(
      f'config.train.batch_size={config.train.batch_size} does not split over '
      f'{mesh.size} devices; use a multiple of {mesh.size}.'
    )
  return _Steps(
    mesh=mesh,
    train=steps_lib.make_train_step(config, mesh),
    eval=steps_lib.make_eval_step(config, mesh),
    init_carry=steps_lib.make_init_carry(config, mesh),
  )


def _start(
  config: ml_collections.ConfigDict,
  manager,
  workdir: str,
  programs: _Steps,
  datasets,
  restore_step: Optional[int],
  *,
  explicit: bool,
):
  """``(run, step)``: the run restored from checkpoint ``step``, or a fresh one (step None).

  Unless the step was named (``explicit``), a checkpoint that fails to restore is set aside
  and the next older one is tried.
  """
  rng = jax.random.PRNGKey(int(config.train.seed))
  make_state = lambda params=None: train_state_lib.create_train_state(
    config, rng, params, datasets.windows_per_epoch
  )
  rep = steps_lib.replicated(programs.mesh)
  shapes = jax.eval_shape(make_state)
  abstract_state = _abstract(shapes, rep)
  abstract_carry = _abstract(
    jax.eval_shape(programs.init_carry, shapes.params), steps_lib.data_sharded(programs.mesh)
  )
  data = iter(datasets.train)
  if restore_step is not None:
    restore_step, restored = _restore_newest_intact(
      manager,
      workdir,
      [restore_step] if explicit else [s for s in manager.all_steps() if s <= restore_step],
      lambda s: _restore(manager, s, abstract_state, abstract_carry, data),
      explicit=explicit,
      config=config,
    )
  if restore_step is None:
    data = iter(datasets.train)  # A failed restore may have moved it.
    state = jax.jit(make_state, out_shardings=rep)()
    return _Run(
      state, programs.init_carry(state.params), data, Progress(), step=0, saved=None
    ), None
  params, train = restored
  if train is None:  # Parameters only (e.g. a PRiSM import): a fresh optimizer.
    state = jax.jit(make_state, in_shardings=rep, out_shardings=rep)(params)
    # Put on the mesh here: a one-device scalar would be copied to the other devices at the
    # first step, a copy the loop's transfer guard refuses.
    state = state.replace(step=jax.device_put(np.int32(restore_step), rep))
    carry, progress = programs.init_carry(state.params), Progress()
    logging.info(
      'Starting from the parameters of checkpoint %d with a fresh optimizer.', restore_step
    )
  else:
    state, carry, progress = _resumed(params, train, abstract_state.tx)
    _log_resumed(restore_step, progress, num_epochs=len(datasets.windows_per_epoch))
  return _Run(
    state, carry, data, progress, step=int(jax.device_get(state.step)), saved=restore_step
  ), restore_step


def _resumed(params, train: dict, tx: optax.GradientTransformation):
  """``(state, carry, progress)`` from a training checkpoint's items."""
  state = train_state_lib.TrainState(
    step=train['step'], params=params, opt_state=train['opt_state'], rng=train['rng'], tx=tx
  )
  return state, train['carry'], Progress.from_tree(train['loop'])


def _log_resumed(step: int, progress: Progress, num_epochs: int) -> None:
  logging.info(
    'Resumed from checkpoint %d (%d of %d epochs done, %d steps into epoch %d).',
    step,
    progress.epoch,
    num_epochs,
    progress.epoch_steps,
    min(progress.epoch + 1, num_epochs),
  )


def _abstract(tree, sharding):
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)


def _restore(manager, step: int, abstract_state, abstract_carry, data):
  """``(params, train item)`` of checkpoint ``step`` (item None: a parameters-only one).

  ``data``, the training iterator, moves to the saved position.
  """
  if checkpoint_lib.has_train_state(manager, step):
    return checkpoint_lib.restore_training(
      manager,
      step,
      abstract_state.params,
      _train_item(abstract_state, abstract_carry, Progress()),
      data,
    )
  return checkpoint_lib.restore_params_into(manager, step, abstract_state.params), None


def _make_loop(
  config: ml_collections.ConfigDict,
  workdir: str,
  data_dir: str,
  manager,
  programs: _Steps,
  datasets,
  hooks: Hooks,
  resumed_step: int,
) -> _Loop:
  """What the loop reads: the monitored metric, the reporter, the hooks."""
  t = config.train
  monitor = t.monitor
  if monitor.startswith('val_') and datasets.val is None:
    logging.warning(
      'No validation files (val_frac=%s); monitoring %r instead of %r.',
      config.data.val_frac,
      monitor[4:],
      monitor,
    )
    monitor = monitor[4:]
  reporter = reporting.Reporter(
    workdir, config, datasets.windows_per_epoch, resumed_step=resumed_step
  )
  return _Loop(
    config=config,
    workdir=workdir,
    data_dir=data_dir,
    manager=manager,
    steps=programs,
    val_data=datasets.val,
    windows_per_epoch=tuple(datasets.windows_per_epoch),
    reporter=reporter,
    monitor=monitor,
    learning_rate=train_state_lib.learning_rate_schedule(config, datasets.windows_per_epoch),
    hooks=hooks,
  )


def _finished(progress: Progress, num_epochs: int, t: ml_collections.ConfigDict) -> Optional[str]:
  """Why a resumed run has nothing left to do (and how to train on), or None."""
  epochs_done = progress.epoch
  if epochs_done >= num_epochs:
    more = num_epochs + max(num_epochs // 2, 1)
    return (
      f'training is finished ({epochs_done} of {num_epochs} epochs done). To train '
      f'longer, run again with --config.train.num_epochs={more} (or any number above '
      'the current one).'
    )
  patience = int(t.early_stopping_patience)
  if patience > 0 and progress.bad_epochs >= patience and not progress.epoch_steps:
    return (
      f'training stopped early after {epochs_done} epochs ({patience} epochs without '
      f'improvement of {t.monitor}). To train on, run again with '
      f'--config.train.early_stopping_patience=0 (never stop) or a larger value.'
    )
  return None


def _install_signal_handlers(stop: _Stop) -> dict:
  """SIGINT/SIGTERM ask the loop to checkpoint and return; a second one acts as usual."""
  if threading.current_thread() is not threading.main_thread():
    return {}
  previous = {}

  def handler(signum, frame):
    stop.signal = signum
    signal.signal(signum, previous[signum])

  for s in (signal.SIGINT, signal.SIGTERM):
    previous[s] = signal.signal(s, handler)
  return previous


# ---------------------------------------------------------------------------------------
# Resume helpers
# ---------------------------------------------------------------------------------------


def _merge_model_config(config: ml_collections.ConfigDict, saved: ml_collections.ConfigDict):
  """The architecture comes from the checkpoint; dropout, matmul dtype and RNN form (how the
  same parameters are computed) from ``config``."""
  model = ml_collections.ConfigDict(saved.model.to_dict())
  for k in ('rnn_dropout', 'dtype', 'rnn_form'):
    model[k] = config.model[k]
  mine = checkpoint_lib.config_to_json(config.model)
  theirs = checkpoint_lib.config_to_json(model)
  diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
  if diff:
    logging.warning(
      'Using the checkpoint\'s model config; these fields differ from the given '
      'config and are ignored: %s',
      {k: (mine.get(k), theirs.get(k)) for k in diff},
    )
  config = ml_collections.ConfigDict(config.to_dict())
  config.model = model
  return config


def _note_data_change(workdir: str, datasets, *, resumed: bool) -> None:
  """Warns when a resumed run's files differ from its last start's: the epoch is re-planned.

  The data position in a checkpoint counts windows of the plan made from the file list, so
  after files are added, removed or skipped the run goes on over a different order.
  """
  # Real paths: the same --data_dir given relative once and absolute the next time (or
  # through a link) is the same data.
  files = {
    'train': [[os.path.realpath(p), os.path.getsize(p)] for p in datasets.train_files],
    'val': [[os.path.realpath(p), os.path.getsize(p)] for p in datasets.val_files],
  }
  path = os.path.join(workdir, workdir_lib.DATA_FILES)
  try:
    with open(path) as f:
      before = _real_paths(json.load(f))
  except (OSError, ValueError, TypeError, AttributeError):
    before = None
  if resumed and before is not None and before != files:
    logging.warning(
      'The training files changed since this run last started (%d -> %d '
      'training, %d -> %d validation files); the epochs are re-planned over '
      'the new files, so the resumed run does not continue the old order.',
      len(before.get('train', ())),
      len(files['train']),
      len(before.get('val', ())),
      len(files['val']),
    )
  with files_lib.atomic_write(path) as f:
    json.dump(files, f)


# How Orbax says that a checkpoint holds arrays of other shapes or another tree: the
# checkpoint is whole, the config asking for it is another one.
_OTHER_SHAPES = ('not compatible with the stored shape', 'tree structure', 'structure mismatch')


def _refuse_other_configuration(manager, workdir: str, step: int, config, error) -> None:
  """Raises ValueError when ``error`` says checkpoint ``step`` was made with other shapes."""
  text = str(error)
  if not any(s in text for s in _OTHER_SHAPES):
    return
  try:
    stored = _flat(checkpoint_lib.config_to_json(checkpoint_lib.restore_config(manager, step)))
  except Exception:  # pylint: disable=broad-except  (its config is damaged: no names to give)
    stored = {}
  given = _flat(checkpoint_lib.config_to_json(config))
  differ = sorted(k for k in stored.keys() & given.keys() if stored[k] != given[k])
  fields = ', '.join(f'{k} ({stored[k]!r} there, {given[k]!r} here)' for k in differ[:4])
  first_line = (text.strip().splitlines() or [''])[0][:120]
  raise ValueError(
    f'{workdir}: checkpoint {step} was trained with another config'
    + (f': it differs in {fields}' if fields else f' ({first_line})')
    + '. Use a new --workdir for this config, or train this one with its stored config '
    f'({os.path.join(workdir, workdir_lib.CONFIG)}); nothing was moved.'
  )


def _flat(tree: dict, prefix: str = '') -> dict:
  """``{'train.batch_size': 4, ...}`` of a nested dict."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def _real_paths(stored: dict) -> dict:
  """A stored ``data_files.json`` with its paths made real (files written before were as given).

  Raises TypeError / AttributeError / ValueError for a file of another shape.
  """
  return {
    kind: [[os.path.realpath(p), size] for p, size in stored.get(kind, ())]
    for kind in ('train', 'val')
  }


def _restore_newest_intact(manager, workdir: str, steps, restore, *, explicit: bool, config=None):
  """``(step, restore(step))`` for the newest of ``steps`` that restores, else ``(None, None)``.

  A damaged checkpoint is moved to ``workdir/broken_checkpoints`` with a warning naming it,
  and the next older one is tried; one the user named (``explicit``) raises instead. With
  ``config`` (the config the run would restore into), a checkpoint whose arrays have other
  shapes or structure is not damaged, it belongs to another configuration: ValueError naming
  the fields that differ, and nothing is moved.
  """
  for step in sorted(steps, reverse=True):
    try:
      return step, restore(step)
    except Exception as e:  # pylint: disable=broad-except
      if config is not None:
        _refuse_other_configuration(manager, workdir, step, config, e)
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
