"""The listening room's part in a training run, as ``train.Hooks`` the commands compose.

* at the start, the training audio's profile (``clip_score``): what the gallery and
  ``samplernn-generate --keep`` score clips against (made once per study for a search);
* after each epoch's checkpoint, PRiSM's clips (``ID_e=EPOCH_t=TEMP.wav`` in
  ``WORKDIR/generated``, when the policy is 'Always' or the monitored metric improved), in
  TensorBoard and on the run's page.
"""

import functools
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


def training_hooks(
  config,
  on_eval: Optional[Callable[[int, dict], None]] = None,
  *,
  shared_profiles: Optional[str] = None,
) -> train.Hooks:
  """The profile at the start and clips after checkpoints (unless
  ``config.generate.max_generate_per_epoch`` is 0); ``on_eval`` is passed through.

  ``shared_profiles``: a folder where runs on the same data keep its profile once (a search's
  trials), each run starting with a copy; without it each run profiles its own data.
  """
  return train.Hooks(
    on_start=functools.partial(store_profile, shared=shared_profiles),
    on_eval=on_eval,
    on_checkpoint=clips_after_checkpoint if _makes_clips(config) else None,
  )


def store_profile(start: train.Started, shared: Optional[str] = None) -> None:
  """The training audio's profile in the workdir, unless it holds that one already.

  With ``shared``, the profile is made once in ``shared/RATE_VALFRAC`` (what it depends on
  besides the data) and copied: reading a whole corpus again for every run would cost more
  than many short trials.
  """
  if jax.process_index() != 0:
    return
  if shared is None:
    clip_score.store_training_profile(start.workdir, start.data_dir, start.config)
    return
  key = f'{int(start.config.data.sample_rate)}_{float(start.config.data.val_frac):g}'
  profile = clip_score.store_training_profile(
    os.path.join(shared, key), start.data_dir, start.config
  )
  if clip_score.load_profile(start.workdir) is None:
    clip_score.save_profile(start.workdir, profile)


def score_new_clips(workdir: str, num_seqs: int, seconds: float) -> dict:
  """``{path: curation score}`` of ``num_seqs`` clips generated from the run's last checkpoint
  into ``WORKDIR/tune_clips`` (a search's ``--objective=clip_score``)."""
  result = clips_lib.generate_files(
    workdir,
    os.path.join(workdir, 'tune_clips', 'clip.wav'),
    num_seqs=num_seqs,
    duration=seconds,
    progress=False,
  )
  scores = clip_score.score_paths(result['paths'], reference=workdir)
  return {s['path']: float(s['score']) for s in scores}


def clips_after_checkpoint(saved: train.Checkpointed) -> None:
  """PRiSM's clips after a checkpoint, in TensorBoard and on the run's gallery page."""
  if saved.config.train.checkpoint_policy != 'Always' and not saved.improved:
    return
  run_id = os.path.basename(saved.workdir.rstrip('/')) or 'run'
  # Seeded by the step, so a resumed run makes the clips an uninterrupted one would.
  rng = jax.random.fold_in(jax.random.PRNGKey(int(saved.config.train.seed) + 1), saved.step)
  made = clips_lib.epoch_clips(
    steps.host_local(saved.params),
    saved.config,
    os.path.join(saved.workdir, workdir_lib.GENERATED),
    run_id,
    saved.epoch,
    rng,
  )
  for path, audio in made:
    logging.info('Generated %s', path)
    saved.reporter.audio(f'generated/{os.path.basename(path)}', audio, saved.step)
  if made:
    gallery.refresh(saved.workdir, data_dir=saved.data_dir)  # The page lists the new clips.


def _makes_clips(config) -> bool:
  """Clips come from one process's sampler; on several processes the others would wait at the
  next step's collectives for as long as it takes, so it is off there."""
  wanted = int(config.generate.max_generate_per_epoch) > 0
  if wanted and jax.process_count() > 1:
    logging.info(
      'In-training generation is off on %d processes (it would stall the others); '
      'generate from the checkpoints with samplernn-generate.',
      jax.process_count(),
    )
    return False
  return wanted
