"""The listening room's part in a training run, as ``train.Hooks`` the commands compose.

* at the start, the training audio's profile (``clip_score``): what the gallery and
  ``samplernn-generate --keep`` score clips against;
* after each epoch's checkpoint, PRiSM's clips (``ID_e=EPOCH_t=TEMP.wav`` in
  ``WORKDIR/generated``, when the policy is 'Always' or the monitored metric improved), in
  TensorBoard and on the run's page.
"""

import os
from typing import Callable, Optional

from absl import logging
import jax

from samplernn_jax import steps
from samplernn_jax import train
from samplernn_jax import workdir as workdir_lib
from samplernn_jax.listening import clip_score
from samplernn_jax.listening import clips as clips_lib
from samplernn_jax.listening import gallery


def training_hooks(config, on_eval: Optional[Callable[[int, dict], None]] = None, *,
                   profile: bool = True) -> train.Hooks:
  """The profile at the start (unless ``profile`` is False) and clips after checkpoints
  (unless ``config.generate.max_generate_per_epoch`` is 0); ``on_eval`` is passed through."""
  return train.Hooks(on_start=store_profile if profile else None, on_eval=on_eval,
                     on_checkpoint=clips_after_checkpoint if _makes_clips(config) else None)


def store_profile(start: train.Started) -> None:
  """The training audio's profile in the workdir, unless it holds that one already."""
  if jax.process_index() == 0:
    clip_score.store_training_profile(start.workdir, start.data_dir, start.config)


def clips_after_checkpoint(saved: train.Checkpointed) -> None:
  """PRiSM's clips after a checkpoint, in TensorBoard and on the run's gallery page."""
  if saved.config.train.checkpoint_policy != 'Always' and not saved.improved:
    return
  run_id = os.path.basename(saved.workdir.rstrip('/')) or 'run'
  # Seeded by the step, so a resumed run makes the clips an uninterrupted one would.
  rng = jax.random.fold_in(jax.random.PRNGKey(int(saved.config.train.seed) + 1), saved.step)
  made = clips_lib.epoch_clips(steps.host_local(saved.params), saved.config,
                               os.path.join(saved.workdir, workdir_lib.GENERATED), run_id,
                               saved.epoch, rng)
  for path, audio in made:
    logging.info('Generated %s', path)
    saved.reporter.audio(f'generated/{os.path.basename(path)}', audio, saved.step)
  if made:
    gallery.refresh(saved.workdir)  # The run's page lists the new clips.


def _makes_clips(config) -> bool:
  """Clips come from one process's sampler; on several processes the others would wait at the
  next step's collectives for as long as it takes, so it is off there."""
  wanted = int(config.generate.max_generate_per_epoch) > 0
  if wanted and jax.process_count() > 1:
    logging.info('In-training generation is off on %d processes (it would stall the others); '
                 'generate from the checkpoints with samplernn-generate.', jax.process_count())
    return False
  return wanted
