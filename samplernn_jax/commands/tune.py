"""``samplernn-tune``: a hyper-parameter search on Optuna; every trial is a normal run.

  samplernn-tune --study_dir=S --config=configs/tiny.py --space=configs/spaces/small.py --trials=8
  samplernn-tune --study_dir=S --report

How trials run, are pruned and are resumed after a worker dies: ``samplernn_jax.search.tune``.
``--workers=K`` starts K processes of this command here; the same command on other machines
with one PostgreSQL/MySQL ``--storage`` URL adds theirs.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import optuna

from samplernn_jax import backend
from samplernn_jax import default_config
from samplernn_jax import processes
from samplernn_jax.commands import cli
from samplernn_jax.corpus import demo_corpus
from samplernn_jax.listening import training_hooks
from samplernn_jax.search import tune

FLAGS = flags.FLAGS

# No default here: cli.run supplies it (see cli on --config).
_CONFIG = config_flags.DEFINE_config_file(
  'config',
  None,
  'Base training configuration; the space overrides some of its fields in each trial.',
  lock_config=True,
)
flags.DEFINE_string(
  'study_dir',
  None,
  'Folder of the study: trials/NNNN/ runs, study.db (default storage), report.md.',
  required=True,
)
flags.DEFINE_string('data_dir', None, 'Directory of audio files; absent: the demo corpus.')
flags.DEFINE_string(
  'space',
  None,
  'Python file whose get_space() maps config fields '
  '(model.dim) to optuna distributions or lists of choices, or the name of a '
  'shipped one (comparisons, small).',
)
flags.DEFINE_integer('trials', 10, 'Finished trials the study should hold.')
flags.DEFINE_string(
  'storage',
  None,
  'Optuna database URL (sqlite:///..., '
  'postgresql+psycopg2://..., mysql+pymysql://...); default '
  'sqlite:///STUDY_DIR/study.db.',
)
flags.DEFINE_string(
  'study_name', None, 'Study name in the storage; default: the basename of --study_dir.'
)
flags.DEFINE_enum(
  'objective',
  'val_bits',
  list(tune.OBJECTIVES),
  'val_bits: best validation '
  'bits/sample (minimized); clip_score: curation score of clips generated at '
  'the end (maximized).',
)
flags.DEFINE_integer('workers', 1, 'Worker processes on this machine.')
flags.DEFINE_enum(
  'pruner', 'median', list(tune.PRUNERS), 'Stops trials whose validation falls behind.'
)
flags.DEFINE_integer(
  'pruner_startup_trials', 5, 'Median pruner: trials that finish before any is pruned.'
)
flags.DEFINE_integer('pruner_warmup_steps', 0, 'Train steps before a trial may be pruned.')
flags.DEFINE_enum(
  'sampler',
  'tpe',
  list(tune.SAMPLERS),
  'How trials pick values; grid runs every combination of the listed choices once.',
)
flags.DEFINE_integer(
  'seed',
  None,
  'Seed of the sampler (worker i of --workers: seed + i); '
  'give workers on other machines seeds of their own.',
)
flags.DEFINE_integer('clips', 4, 'clip_score: clips generated per trial.')
flags.DEFINE_float('clip_seconds', 2.0, 'clip_score: seconds per clip.')
flags.DEFINE_integer('heartbeat_seconds', 20, 'Seconds between a worker\'s heartbeats.')
flags.DEFINE_integer(
  'grace_seconds',
  60,
  'A running trial without a heartbeat for this long '
  'is failed and re-queued (resumed by the next worker).',
)
flags.DEFINE_string(
  'compilation_cache_dir',
  None,
  'Where compiled steps are kept, so trials '
  'of one shape compile once; default $JAX_COMPILATION_CACHE_DIR or '
  '~/.cache/samplernn_jax/jax; an empty value turns the cache off.',
)
flags.DEFINE_bool(
  'report',
  False,
  'Write STUDY_DIR/report.md and pictures, print the best '
  'trial\'s samplernn-train command, and exit.',
)


def _report(study_name: str) -> None:
  from samplernn_jax.search import report as tune_report  # pylint: disable=g-import-not-at-top

  study = tune.load_study(FLAGS.study_dir, FLAGS.storage, study_name)
  path, command = tune_report.write(study, FLAGS.study_dir)
  print(f'Report: {path}')
  if command:
    print(f'Train the best trial longer:\n  {command}')


def _worker_argv() -> list:
  """This command as run, less ``--workers`` and ``--seed`` (each worker gets its own)."""
  args = [a for a in sys.argv[1:] if not a.startswith(('--workers', '--seed'))]
  return [sys.executable, '-m', 'samplernn_jax.commands.tune', *args]


def main(argv):
  processes.die_with_parent()  # A worker of --workers: it ends with the command that ran it.
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  study_dir = os.path.abspath(FLAGS.study_dir)
  study_name = FLAGS.study_name or os.path.basename(study_dir)
  if FLAGS.report:
    return _report(study_name)
  # Everything is checked before any trial, and before the database is made.
  config = cli.loaded_config(_CONFIG)
  overrides = config_flags.get_override_values(FLAGS['config'])
  space_file = FLAGS.space
  if space_file and not os.path.exists(space_file):
    space_file = cli.shipped(space_file, 'spaces') or space_file
  space = tune.load_space(space_file, config, list(overrides), FLAGS.objective, FLAGS.data_dir)
  prune = tune.can_prune(FLAGS.pruner, FLAGS.objective, space)
  pruner = tune.make_pruner(
    FLAGS.pruner if prune else 'none', FLAGS.pruner_startup_trials, FLAGS.pruner_warmup_steps
  )
  study = tune.start_study(
    study_dir,
    FLAGS.storage,
    study_name,
    space=space,
    objective=FLAGS.objective,
    pruner=pruner,
    sampler=FLAGS.sampler,
    seed=FLAGS.seed,
    heartbeat_seconds=FLAGS.heartbeat_seconds,
    grace_seconds=FLAGS.grace_seconds,
  )
  if FLAGS.workers > 1:
    return tune.spawn_workers(FLAGS.workers, _worker_argv(), FLAGS.seed, FLAGS.sampler)

  backend.enable_compilation_cache(FLAGS.compilation_cache_dir)
  # The trials' training runs get the listening room's hooks and data as samplernn-train's
  # do; the profile of a --data_dir corpus is made once for the study.
  shared = os.path.join(FLAGS.study_dir, 'profiles') if FLAGS.data_dir else None
  studio = tune.Studio(
    hooks=lambda c, on_eval: training_hooks.training_hooks(c, on_eval, shared_profiles=shared),
    demo_corpus=demo_corpus.in_workdir,
    score_clips=training_hooks.score_new_clips,
  )
  objective = tune.Objective(
    config,
    config_flags.get_config_filename(FLAGS['config']),
    overrides,
    space,
    FLAGS.study_dir,
    FLAGS.data_dir,
    FLAGS.objective,
    studio=studio,
    clips=FLAGS.clips,
    clip_seconds=FLAGS.clip_seconds,
    prune=prune,
  )
  optuna.logging.set_verbosity(optuna.logging.INFO)
  trials = FLAGS.trials
  if FLAGS.sampler == 'grid' and trials > tune.grid_size(space):
    logging.warning(
      '--trials=%d: the grid has %d combinations; running each once.', trials, tune.grid_size(space)
    )
    trials = tune.grid_size(space)
  try:
    tune.work(study, objective, trials, FLAGS.study_dir)
  except tune.Interrupted as e:
    print(f'samplernn-tune: {e}', flush=True)
    return 0
  n = tune.trial_counts(study)
  print(
    f'samplernn-tune: the study holds {n["finished"]} finished trials; '
    f'report with --study_dir={FLAGS.study_dir} --report.',
    flush=True,
  )


def run():
  """Console-script entry point."""
  cli.run(main, 'samplernn-tune', config_file=default_config.__file__)


if __name__ == '__main__':
  run()
