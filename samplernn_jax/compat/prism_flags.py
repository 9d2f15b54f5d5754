"""PRiSM's command-line flags and what each is called here, for people who type them by habit.

``samplernn-train --num_epochs=5`` is an unknown flag here; instead of absl's guess at a
similar flag, the command says what this project calls it (``--config.train.num_epochs=5``).
docs/prism.md ("Coming from PRiSM") has the same tables.
"""

from typing import Optional

_TRAIN = {
  'id': '--workdir=RUN (its name is the ID of generated files)',
  'logdir_root': '--workdir=RUN',
  'output_dir': '--workdir=RUN',
  'config_file': '--config=FILE.py (a PRiSM JSON config + checkpoint: samplernn-import-prism)',
  'batch_size': '--config.train.batch_size=N',
  'num_epochs': '--config.train.num_epochs=N',
  'optimizer': '--config.train.optimizer=adam|sgd|rmsprop',
  'learning_rate': '--config.train.learning_rate=X',
  'momentum': '--config.train.momentum=X',
  'reduce_learning_rate_after': '--config.train.reduce_learning_rate_after=EPOCHS',
  'monitor': '--config.train.monitor=METRIC',
  'checkpoint_every': '--config.train.checkpoint_every_epochs=N',
  'checkpoint_policy': '--config.train.checkpoint_policy=Always|Best',
  'max_checkpoints': '--config.train.max_checkpoints=N (0 keeps all)',
  'resume': 'it is not needed: a workdir with checkpoints always resumes (a new workdir '
  'starts over)',
  'early_stopping_patience': '--config.train.early_stopping_patience=EPOCHS',
  'generate': '--config.generate.max_generate_per_epoch=0 (to turn in-training clips off)',
  'max_generate_per_epoch': '--config.generate.max_generate_per_epoch=N',
  'output_file_dur': '--config.generate.output_file_dur=SECONDS',
  'sample_rate': '--config.data.sample_rate=HZ',
  'temperature': '--config.generate.temperatures=0.95,0.9',
  'seed': 'samplernn-generate --seed_audio=FILE (training takes no seed audio)',
  'seed_offset': 'samplernn-generate --seed_offset=N (training takes no seed audio)',
  'val_frac': '--config.data.val_frac=X',
  'val_pct': '--config.data.val_frac=X',
  'num_val_batches': 'it is not needed: validation reads every validation file',
  'verbose': 'it is not needed: a progress bar on a terminal, lines otherwise',
  'seq_len': '--config.data.seq_len=N',
}

_GENERATE = {
  'output_path': '--output=FILE.wav',
  'checkpoint_path': '--workdir=RUN (and --step=N); import a PRiSM model once with '
  'samplernn-import-prism',
  'config_file': '--workdir=RUN (the model config is stored with its checkpoints)',
  'dur': '--duration=SECONDS',
  'sample_rate': "it is not needed: the model's config.data.sample_rate is used",
  'seed': '--seed_audio=FILE',
}

_BY_PROGRAM = {'samplernn-train': _TRAIN, 'samplernn-generate': _GENERATE}


def equivalent(program: str, flag: str) -> Optional[str]:
  """What ``program`` calls PRiSM's ``--flag`` (a name without dashes), or None."""
  return _BY_PROGRAM.get(program, {}).get(flag)


def unknown_flag_message(program: str, argv: list) -> Optional[str]:
  """One line for the first PRiSM flag in ``argv`` that ``program`` does not define."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  for arg in argv[1:]:
    if not arg.startswith('-'):
      continue
    name = arg.lstrip('-').split('=', 1)[0]
    if name in flags.FLAGS:
      continue
    here = equivalent(program, name)
    if here is not None:
      if here.startswith(('--', 'samplernn-')):
        here = f'use {here}'
      return f"--{name} is PRiSM's flag; here {here} (see --help)."
  return None
