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
import os
from typing import Any, Optional

import ml_collections
import orbax.checkpoint as ocp

from samplernn_jax import config as config_lib
from samplernn_jax import files
from samplernn_jax import workdir as workdir_lib


def config_to_json(config: ml_collections.ConfigDict) -> dict:
  """A JSON-safe dict of ``config`` (tuples become lists)."""
  return json.loads(config.to_json())


def config_from_json(d: dict) -> ml_collections.ConfigDict:
  """A stored config, its missing fields (a run older than them) filled with the defaults."""
  return config_lib.with_defaults(d)


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  os.makedirs(workdir, exist_ok=True)
  with files.atomic_write(os.path.join(workdir, workdir_lib.CONFIG)) as f:
    json.dump(config_to_json(config), f, indent=2, sort_keys=True)


def make_manager(
  workdir: str, options: Optional[ocp.CheckpointManagerOptions] = None
) -> ocp.CheckpointManager:
  """The manager over ``workdir/checkpoints`` (created if missing)."""
  directory = os.path.join(os.path.abspath(workdir), workdir_lib.CHECKPOINTS)
  return ocp.CheckpointManager(directory, options=options)


def save_params(workdir: str, step: int, params: Any, config: ml_collections.ConfigDict) -> None:
  """Writes a parameters-only checkpoint (what the PRiSM importer produces)."""
  save_config(workdir, config)
  with make_manager(workdir) as manager:
    manager.save(
      step,
      args=ocp.args.Composite(
        params=ocp.args.StandardSave(params), config=ocp.args.JsonSave(config_to_json(config))
      ),
      force=True,
    )
    manager.wait_until_finished()


def latest_step(workdir: str) -> Optional[int]:
  directory = os.path.join(os.path.abspath(workdir), workdir_lib.CHECKPOINTS)
  if not os.path.isdir(directory):
    return None
  with make_manager(workdir) as manager:
    return manager.latest_step()


class CheckpointError(ValueError):
  """A checkpoint that exists but cannot be read; the message names its folder or item."""


ITEMS = ('params', 'config', 'train', 'data')


def unreadable(manager: ocp.CheckpointManager, step: int, error: BaseException) -> CheckpointError:
  """A CheckpointError naming the item of ``step`` that ``error`` came from.

  Orbax and TensorStore name the failing folder somewhere in long messages (a truncated
  array file), or say an item is missing; a JSON error comes from ``config``.
  """
  step_dir = os.path.join(str(manager.directory), str(step))
  text = str(error)
  where = step_dir
  for item in ITEMS:
    if (
      f'{os.sep}{step}{os.sep}{item}' in text
      or f'"{item}"' in text
      or (item == 'config' and isinstance(error, json.JSONDecodeError))
    ):
      where = os.path.join(step_dir, item)
      break
  # TensorStore appends its whole spec to the first line.
  first_line = (text.strip().splitlines() or [''])[0].split(' See full TensorStore')[0][:160]
  return CheckpointError(
    f'{where}: checkpoint {step} is unreadable ({type(error).__name__}: {first_line})'
  )


def set_aside(manager: ocp.CheckpointManager, step: int, workdir: str) -> str:
  """Moves checkpoint ``step`` to ``workdir/broken_checkpoints/`` (kept for inspection).

  Left in place, it would block a new save of the same step; returns the new path.
  """
  target_dir = os.path.join(os.path.abspath(workdir), workdir_lib.BROKEN_CHECKPOINTS)
  os.makedirs(target_dir, exist_ok=True)
  target = os.path.join(target_dir, str(step))
  while os.path.exists(target):
    target += '_'
  os.replace(os.path.join(str(manager.directory), str(step)), target)
  manager.reload()
  return target


def _restore_params_and_config(manager: ocp.CheckpointManager, step: int):
  try:
    config = config_from_json(
      manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))['config']
    )
    params = manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore()))[
      'params'
    ]
  except Exception as e:  # pylint: disable=broad-except
    # Orbax raises bare Exceptions, KeyErrors and JSON errors for damaged files.
    raise unreadable(manager, step, e) from None
  return params, config


def restore_params(workdir: str, step: Optional[int] = None):
  """Returns ``(params, config, step)`` of ``step`` (default: the latest) in ``workdir``.

  Raises:
    FileNotFoundError: no checkpoint (or not that step) under ``workdir/checkpoints``.
    CheckpointError: that checkpoint is damaged; the message names the broken item, the
      intact steps and the ``--step`` to pass.
  """
  directory = os.path.join(os.path.abspath(workdir), workdir_lib.CHECKPOINTS)
  if not os.path.isdir(directory):
    raise FileNotFoundError(
      f'{directory}: no checkpoints here; train or import a model into --workdir={workdir} first.'
    )
  with make_manager(workdir) as manager:
    steps = manager.all_steps()
    if not steps:
      raise FileNotFoundError(f'{directory}: holds no finished checkpoint.')
    if step is None:
      step = manager.latest_step()
    elif step not in steps:
      raise FileNotFoundError(
        f'{directory}: no checkpoint at step {step}; available: {sorted(steps)}.'
      )
    try:
      params, config = _restore_params_and_config(manager, step)
    except CheckpointError as e:
      intact = []
      for other in sorted(steps, reverse=True):
        try:
          if other != step:
            _restore_params_and_config(manager, other)
            intact.append(other)
        except CheckpointError:
          pass
      hint = (
        f'intact checkpoints: {intact}; pass --step={intact[0]}'
        if intact
        else 'no intact checkpoint is left; train again or re-import the model'
      )
      raise CheckpointError(f'{e}; {hint}.') from None
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
    preservation = policies.AnyPreservationPolicy(
      [
        policies.LatestN(n=1),
        policies.BestN(
          get_metric_fn=lambda m: m[monitor],
          reverse=MONITORS[monitor] == 'min',
          n=keep,
          keep_checkpoints_without_metrics=False,
        ),
      ]
    )
  return ocp.CheckpointManagerOptions(preservation_policy=preservation, create=True)


def has_train_state(manager: ocp.CheckpointManager, step: int) -> bool:
  """Whether checkpoint ``step`` holds training state (False for parameters-only ones).

  Either training item counts, so a training checkpoint that lost one is found damaged
  when restored, instead of passing for parameters only (with a fresh optimizer).
  """
  return any(
    os.path.isdir(os.path.join(str(manager.directory), str(step), item))
    for item in ('train', 'data')
  )


def save_training(
  manager: ocp.CheckpointManager,
  step: int,
  params: Any,
  train: Any,
  data_iterator: Any,
  config: ml_collections.ConfigDict,
  metrics: Optional[dict] = None,
) -> None:
  """Saves a full training checkpoint; returns once device arrays are copied to the host.

  The write finishes in the background. Orbax writes into a temporary directory and renames
  it into place only when every item is complete, so a process killed mid-save leaves the
  previous checkpoints untouched (the partial one is ignored, and cleaned up later).
  """
  import grain  # The pipeline's dependency; only training checkpoints need it.

  manager.save(
    step,
    args=ocp.args.Composite(
      params=ocp.args.StandardSave(params),
      config=ocp.args.JsonSave(config_to_json(config)),
      train=ocp.args.StandardSave(train),
      data=grain.checkpoint.CheckpointSave(data_iterator),
    ),
    metrics=metrics,
    force=True,
  )


def restore_training(
  manager: ocp.CheckpointManager,
  step: int,
  abstract_params: Any,
  abstract_train: Any,
  data_iterator: Any,
):
  """Restores ``(params, train)`` of ``step`` into the given shapes and shardings.

  ``data_iterator`` is moved to the saved position in place.
  """
  import grain

  restored = manager.restore(
    step,
    args=ocp.args.Composite(
      params=ocp.args.StandardRestore(abstract_params),
      train=ocp.args.StandardRestore(abstract_train),
      data=grain.checkpoint.CheckpointRestore(data_iterator),
    ),
  )
  return restored['params'], restored['train']


def restore_params_into(manager: ocp.CheckpointManager, step: int, abstract_params: Any):
  """The parameters of ``step`` in the given shapes and shardings (any checkpoint kind)."""
  return manager.restore(
    step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract_params))
  )['params']


def restore_config(manager: ocp.CheckpointManager, step: int) -> ml_collections.ConfigDict:
  return config_from_json(
    manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))['config']
  )
