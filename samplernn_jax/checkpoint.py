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

CHECKPOINT_DIR = 'checkpoints'
CONFIG_FILE = 'config.json'


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
