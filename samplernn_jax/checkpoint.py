"""The one checkpoint format: an Orbax ``CheckpointManager`` under ``workdir/checkpoints``.

Every checkpoint step holds these items:

* ``params``: the model parameters (``StandardSave``);
* ``config``: the full ``ConfigDict`` as JSON, so generation needs only the workdir;
* ``train`` (written by training only): optimizer state, RNG, step, epoch, early
  stopping, everything else a resumed run needs;
* ``data`` (training only): the grain iterator state, so a resumed run reads on.

A checkpoint without ``train`` (e.g. an imported PRiSM model) can still be generated from
and trained on: training then starts a fresh optimizer from those parameters.
``workdir/config.json`` mirrors the latest config for people and tools reading the workdir.
"""

import json
import logging as py_logging
import os
from typing import Any, Optional

import ml_collections
import orbax.checkpoint as ocp

CHECKPOINT_DIR = 'checkpoints'
CONFIG_FILE = 'config.json'


class _DropOrbaxInfo(py_logging.Filter):
  """Drops Orbax's INFO/DEBUG records, which narrate every save and restore step."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING or f'{os.sep}orbax{os.sep}' not in record.pathname


def quiet_orbax_info_logs() -> None:
  """Keeps the command-line programs' logs readable; Orbax warnings and errors still show."""
  logger = py_logging.getLogger('absl')
  if not any(isinstance(f, _DropOrbaxInfo) for f in logger.filters):
    logger.addFilter(_DropOrbaxInfo())


def config_to_json(config: ml_collections.ConfigDict) -> dict:
  """A JSON-safe dict of ``config`` (tuples become lists)."""
  return json.loads(config.to_json())


def config_from_json(d: dict) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(d)


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  os.makedirs(workdir, exist_ok=True)
  tmp = os.path.join(workdir, CONFIG_FILE + '.tmp')
  with open(tmp, 'w') as f:
    json.dump(config_to_json(config), f, indent=2, sort_keys=True)
  os.replace(tmp, os.path.join(workdir, CONFIG_FILE))


def make_manager(workdir: str,
                 options: Optional[ocp.CheckpointManagerOptions] = None) -> ocp.CheckpointManager:
  """The manager over ``workdir/checkpoints`` (created if missing)."""
  directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
  return ocp.CheckpointManager(directory, options=options)


def save_params(workdir: str, step: int, params: Any, config: ml_collections.ConfigDict) -> None:
  """Writes a parameters-only checkpoint (what the PRiSM importer produces)."""
  save_config(workdir, config)
  with make_manager(workdir) as manager:
    manager.save(step, args=ocp.args.Composite(
        params=ocp.args.StandardSave(params),
        config=ocp.args.JsonSave(config_to_json(config))), force=True)
    manager.wait_until_finished()


def latest_step(workdir: str) -> Optional[int]:
  directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
  if not os.path.isdir(directory):
    return None
  with make_manager(workdir) as manager:
    return manager.latest_step()


def restore_params(workdir: str, step: Optional[int] = None):
  """Returns ``(params, config, step)`` of ``step`` (default: the latest) in ``workdir``.

  Raises:
    FileNotFoundError: no checkpoint (or not that step) under ``workdir/checkpoints``.
  """
  directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'{directory}: no checkpoints here; train or import a model into '
                            f'--workdir={workdir} first.')
  with make_manager(workdir) as manager:
    steps = manager.all_steps()
    if not steps:
      raise FileNotFoundError(f'{directory}: holds no finished checkpoint.')
    if step is None:
      step = manager.latest_step()
    elif step not in steps:
      raise FileNotFoundError(f'{directory}: no checkpoint at step {step}; '
                              f'available: {sorted(steps)}.')
    config = config_from_json(manager.restore(
        step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))['config'])
    params = manager.restore(
        step, args=ocp.args.Composite(params=ocp.args.StandardRestore()))['params']
  return params, config, step


# ---------------------------------------------------------------------------------------
# Training checkpoints
# ---------------------------------------------------------------------------------------

POLICIES = ('Always', 'Best')
MONITORS = {'loss': 'min', 'val_loss': 'min', 'accuracy': 'max', 'val_accuracy': 'max'}


def training_options(train_config: ml_collections.ConfigDict) -> ocp.CheckpointManagerOptions:
  """Retention for ``config.train``: ``max_checkpoints`` newest ('Always'), or best ('Best').

  'Best' keeps the ``max_checkpoints`` best by ``monitor`` among the checkpoints saved with
  metrics (epoch ends) *and* always the newest one, so a run can resume where it stopped.
  ``max_checkpoints = 0`` keeps every checkpoint.
  """
  policy, monitor = train_config.checkpoint_policy, train_config.monitor
  if policy not in POLICIES:
    raise ValueError(f'config.train.checkpoint_policy={policy!r}; use one of {POLICIES}.')
  if monitor not in MONITORS:
    raise ValueError(f'config.train.monitor={monitor!r}; use one of {tuple(MONITORS)}.')
  keep = int(train_config.max_checkpoints) or None
  policies = ocp.checkpoint_managers
  if policy == 'Always':
    preservation = policies.LatestN(n=keep)
  else:
    preservation = policies.AnyPreservationPolicy([
        policies.LatestN(n=1),
        policies.BestN(get_metric_fn=lambda m: m[monitor], reverse=MONITORS[monitor] == 'min',
                       n=keep, keep_checkpoints_without_metrics=False)])
  return ocp.CheckpointManagerOptions(preservation_policy=preservation, create=True)


def has_train_state(manager: ocp.CheckpointManager, step: int) -> bool:
  """Whether checkpoint ``step`` holds training state (False for parameters-only ones)."""
  return os.path.isdir(os.path.join(str(manager.directory), str(step), 'train'))


def save_training(manager: ocp.CheckpointManager, step: int, params: Any, train: Any,
                  data_iterator: Any, config: ml_collections.ConfigDict,
                  metrics: Optional[dict] = None) -> None:
  """Saves a full training checkpoint; returns once device arrays are copied to the host.

  The write finishes in the background. Orbax writes into a temporary directory and renames
  it into place only when every item is complete, so a process killed mid-save leaves the
  previous checkpoints untouched (the partial one is ignored, and cleaned up later).
  """
  import grain  # The pipeline's dependency; only training checkpoints need it.
  manager.save(step, args=ocp.args.Composite(
      params=ocp.args.StandardSave(params),
      config=ocp.args.JsonSave(config_to_json(config)),
      train=ocp.args.StandardSave(train),
      data=grain.checkpoint.CheckpointSave(data_iterator)), metrics=metrics, force=True)


def restore_training(manager: ocp.CheckpointManager, step: int, abstract_params: Any,
                     abstract_train: Any, data_iterator: Any):
  """Restores ``(params, train)`` of ``step`` into the given shapes and shardings.

  ``data_iterator`` is moved to the saved position in place.
  """
  import grain
  restored = manager.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(abstract_params),
      train=ocp.args.StandardRestore(abstract_train),
      data=grain.checkpoint.CheckpointRestore(data_iterator)))
  return restored['params'], restored['train']


def restore_params_into(manager: ocp.CheckpointManager, step: int, abstract_params: Any):
  """The parameters of ``step`` in the given shapes and shardings (any checkpoint kind)."""
  return manager.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(abstract_params)))['params']


def restore_config(manager: ocp.CheckpointManager, step: int) -> ml_collections.ConfigDict:
  return config_from_json(manager.restore(
      step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))['config'])
