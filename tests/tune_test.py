"""samplernn-tune: a pruned/failed trial, two workers, a killed worker resumed, bad SPACE input,
the --trials cap, and workers on a throwaway PostgreSQL server.

Every trial is the tiny config on ten 0.1 s files at 8 kHz (50 steps per epoch), SQLite
storage in the test's folder unless the test says PostgreSQL.
"""

import dataclasses
import glob
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import optuna
import pytest

from samplernn_jax import checkpoint as checkpoint_lib
from samplernn_jax import train as train_lib
from samplernn_jax import workdir as workdir_lib
from samplernn_jax.corpus import demo_corpus
from samplernn_jax.listening import clip_score
from samplernn_jax.listening import training_hooks
from samplernn_jax.search import report as tune_report
from samplernn_jax.search import space as search_space
from samplernn_jax.search import tune
from tests.conftest import load_config
from tests.conftest import quiet_tiny
from tests.conftest import synthesize_corpus

REPO = pathlib.Path(__file__).resolve().parents[1]
# What samplernn-tune hands a trial: the listening room's hooks and score, the demo corpus.
STUDIO = tune.Studio(
  hooks=training_hooks.training_hooks,
  demo_corpus=demo_corpus.in_workdir,
  score_clips=training_hooks.score_new_clips,
)
TINY = str(REPO / 'configs' / 'tiny.py')
# Quiet, fast trials: no step lines, no clips while training, a validation every 25 steps.
TRAIN_FLAGS = [
  '--config.train.log_every_steps=0',
  '--config.generate.max_generate_per_epoch=0',
  '--config.train.eval_every_steps=25',
]
State = optuna.trial.TrialState


# Every test trains the same tiny model at lr 1e-3 (the bad trial aside), so after the first
# test the trials (and the two concurrent workers) compile nothing: they only read the cache.
pytestmark = pytest.mark.usefixtures('module_compilation_cache')


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  return synthesize_corpus(tmp_path_factory, seconds=0.1)


def tiny(**train):
  return quiet_tiny(**{'eval_every_steps': 25, **train})


def write_space(path, body: str) -> str:
  path.write_text(
    'from optuna.distributions import *\n\n\ndef get_space():\n  return ' + body + '\n'
  )
  return str(path)


def study_in(study_dir, space, objective='val_bits', pruner=None, heartbeat=(20, 60)):
  storage = tune.make_storage(tune.default_storage(study_dir), *heartbeat)
  return tune.open_study(
    storage,
    'study',
    objective,
    pruner or optuna.pruners.NopPruner(),
    tune.make_sampler('tpe', space, 0),
  )


def run_cli(*args, env=None, **kwargs):
  return subprocess.run(
    [sys.executable, '-m', 'samplernn_jax.commands.tune', *args],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    **kwargs,
  )


def train_steps(workdir) -> list:
  return [r['step'] for r in workdir_lib.read_records(workdir, 'val') if 'val_bits_per_sample' in r]


@pytest.mark.slow
@pytest.mark.filterwarnings('ignore::optuna.exceptions.ExperimentalWarning')
def test_killed_worker_trial_is_retried_from_its_checkpoint(tmp_path, corpus, monkeypatch):
  said = []  # What training logs (absl's handlers vary with what ran before in the session).
  log_info = train_lib.logging.info

  def info(msg, *args, **kwargs):
    said.append(str(msg) % args if args else str(msg))
    log_info(msg, *args, **kwargs)

  monkeypatch.setattr(train_lib.logging, 'info', info)
  study_dir = str(tmp_path / 'study')
  space_file = write_space(tmp_path / 'space.py', "{'model.rnn_type': ['gru']}")
  args = [
    f'--study_dir={study_dir}',
    f'--config={TINY}',
    *TRAIN_FLAGS[1:],
    '--config.train.num_epochs=4',
    '--config.train.log_every_steps=1',
    '--config.train.print_every_seconds=0',  # A line per step: the test waits for one.
    '--config.train.checkpoint_every_steps=10',
    f'--data_dir={corpus}',
    f'--space={space_file}',
    '--trials=1',
    '--heartbeat_seconds=1',
    '--grace_seconds=2',
  ]
  proc = subprocess.Popen(
    [sys.executable, '-m', 'samplernn_jax.commands.tune', *args],
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.DEVNULL,
    text=True,
  )
  for line in proc.stdout:
    if '(30),' in line:  # Global step 30: checkpoints at 10, 20, 30 are written or on the way.
      proc.kill()
      break
  proc.wait(timeout=60)
  workdir = os.path.join(study_dir, 'trials', '0000')
  killed_at = checkpoint_lib.latest_step(workdir)
  assert killed_at is not None and killed_at < 200, killed_at

  space = search_space.load(space_file, tiny())
  study = study_in(study_dir, space, heartbeat=(1, 2))
  config = tiny(num_epochs=4, checkpoint_every_steps=10, log_every_steps=1)
  objective = tune.Objective(config, TINY, {}, space, study_dir, corpus, 'val_bits', studio=STUDIO)
  tune.work(study, objective, 1, study_dir, poll_seconds=0.5)

  killed, retry = study.trials
  assert killed.state == State.FAIL and retry.state == State.COMPLETE
  assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 0
  assert retry.user_attrs['workdir'] == 'trials/0000'
  assert sorted(os.listdir(os.path.join(study_dir, 'trials'))) == ['0000']
  # The retry went on from the killed run's checkpoint (its records past it are dropped on
  # resume, so every step is logged once).
  assert any(s.startswith(f'Resumed from checkpoint {killed_at} ') for s in said), said
  steps = [r['step'] for r in workdir_lib.read_records(workdir, 'train')]
  assert steps == list(range(1, 201))
  assert checkpoint_lib.latest_step(workdir) == 200


@pytest.mark.slow
def test_study_survives_a_bad_trial_and_reports(tmp_path, corpus, monkeypatch):
  """Three trials; lr 10 is pruned (after a checkpoint) or fails, the study goes on."""
  profiled = []
  make_profile = clip_score.make_profile
  monkeypatch.setattr(
    clip_score, 'make_profile', lambda *a, **k: profiled.append(a) or make_profile(*a, **k)
  )
  study_dir = str(tmp_path / 'study')
  os.makedirs(study_dir)
  space = search_space.load(
    write_space(tmp_path / 'space.py', "{'train.learning_rate': FloatDistribution(1e-3, 10)}"),
    tiny(),
  )
  study = study_in(study_dir, space, pruner=tune.make_pruner('median', startup_trials=1))
  for lr in (1e-3, 10.0, 1e-3):
    study.enqueue_trial({'train.learning_rate': lr})
  # As samplernn-tune composes it with --data_dir: one profile of the corpus for the study.
  shared = dataclasses.replace(
    STUDIO,
    hooks=lambda c, on_eval: training_hooks.training_hooks(
      c, on_eval, shared_profiles=os.path.join(study_dir, 'profiles')
    ),
  )
  objective = tune.Objective(
    tiny(num_epochs=2), TINY, {}, space, study_dir, corpus, 'val_bits', studio=shared
  )
  tune.work(study, objective, 3, study_dir)

  good, bad, third = study.trials
  assert good.state == State.COMPLETE and 7 < good.value < 8.1
  assert good.value == min(good.intermediate_values.values())  # The best validation.
  assert bad.state in (State.PRUNED, State.FAIL), bad
  if bad.state == State.PRUNED:  # Stopped at its first validation, checkpointed there.
    workdir = os.path.join(study_dir, bad.user_attrs['workdir'])
    assert checkpoint_lib.latest_step(workdir) == max(bad.intermediate_values) == 25
  else:
    assert bad.user_attrs['error']
  assert third.state == State.COMPLETE and third.value == pytest.approx(good.value)
  assert [t.user_attrs['workdir'] for t in study.trials] == [
    'trials/0000',
    'trials/0001',
    'trials/0002',
  ]
  assert len(profiled) == 1  # The corpus is profiled once per study, not per trial.

  path, command = tune_report.write(study, study_dir)
  report = open(path).read()
  assert '| 1 | 0 | complete |' in report and '[trials/0002](trials/0002/)' in report
  for picture in ('history.png', 'intermediate.png', 'importances.png'):
    assert os.path.getsize(os.path.join(study_dir, 'report', picture)) > 1000
  assert command.startswith(f'samplernn-train --config={TINY} --workdir={study_dir}/trials/0000')
  assert command.endswith('--config.train.learning_rate=0.001 --config.train.num_epochs=4')


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path, corpus):
  """--workers=2 on one SQLite grid study: each of its three points run once, in its own folder."""
  study_dir = str(tmp_path / 'study')
  space = write_space(tmp_path / 'space.py', "{'data.shuffle_seed': [0, 1, 2]}")
  proc = run_cli(
    f'--study_dir={study_dir}',
    f'--config={TINY}',
    *TRAIN_FLAGS,
    '--config.train.num_epochs=1',
    f'--data_dir={corpus}',
    f'--space={space}',
    '--sampler=grid',
    '--seed=0',
    '--trials=5',
    '--workers=2',
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert 'the grid has 3 combinations' in proc.stderr
  study = optuna.load_study(study_name='study', storage=tune.default_storage(study_dir))
  assert [t.state for t in study.trials] == [State.COMPLETE] * 3
  assert sorted(t.params['data.shuffle_seed'] for t in study.trials) == [0, 1, 2]
  for t in study.trials:
    assert train_steps(os.path.join(study_dir, t.user_attrs['workdir'])) == [25, 50]
  assert sorted(os.listdir(os.path.join(study_dir, 'trials'))) == ['0000', '0001', '0002']


@pytest.mark.parametrize(
  'body,message',
  [
    ("{'model.dimm': [16]}", 'model.dimm: no such config field'),
    ("{'model.dim': []}", 'model.dim: an empty list of choices'),
    ("{'model.dim': CategoricalDistribution([])}", 'ValueError'),
    ("{'train.learning_rate': FloatDistribution(1e-2, 1e-3)}", 'ValueError'),
    ("{'model.dim': ['wide']}", "model.dim='wide' does not fit the config field"),
    ("{}", 'non-empty dict'),
  ],
)
def test_bad_space_is_refused(tmp_path, body, message):
  with pytest.raises(search_space.SpaceError, match=message):
    search_space.load(write_space(tmp_path / 'space.py', body), tiny())


def test_bad_input_stops_before_any_trial(tmp_path, corpus):
  study_dir = tmp_path / 'study'
  space = write_space(tmp_path / 'space.py', "{'model.dimm': [16, 32]}")
  proc = run_cli(
    f'--study_dir={study_dir}',
    f'--config={TINY}',
    f'--data_dir={corpus}',
    f'--space={space}',
    timeout=120,
  )
  assert proc.returncode != 0 and 'Traceback' not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1] == (
    f'samplernn-tune: --space={space}: model.dimm: no such config field; fields look like '
    'model.dim or train.learning_rate (see configs/default.py).'
  )
  assert not study_dir.exists()  # No database, no trial folder.


def test_objective_refusals():
  mixed = search_space.validate({'model.q_type': ['mu-law', 'linear']}, tiny())
  with pytest.raises(tune.TuneError, match='only comparable between models on the same'):
    tune.check_objective('val_bits', mixed)
  with pytest.raises(tune.TuneError, match='--objective=loss: use one of'):
    tune.check_objective('loss', mixed)


@pytest.mark.slow  # A trial of its own quantization: a train step compiled for it alone.
def test_clip_score_objective(tmp_path, corpus, monkeypatch):
  """Clips generated from the trained trial, scored by the listening room's score."""
  seen = {}

  def score_paths(paths, reference):
    seen.update(paths=list(paths), reference=reference)
    return [{'path': p, 'score': 0.5 + i / 10} for i, p in enumerate(paths)]

  monkeypatch.setattr(clip_score, 'score_paths', score_paths)
  study_dir = str(tmp_path / 'study')
  os.makedirs(study_dir)
  space = search_space.validate({'model.q_type': ['mu-law', 'linear']}, tiny())
  tune.check_objective('clip_score', space)
  study = study_in(study_dir, space, objective='clip_score')
  study.enqueue_trial({'model.q_type': 'linear'})
  objective = tune.Objective(
    tiny(num_epochs=1),
    TINY,
    {},
    space,
    study_dir,
    corpus,
    'clip_score',
    studio=STUDIO,
    clips=2,
    clip_seconds=0.05,
  )
  tune.work(study, objective, 1, study_dir)
  (trial,) = study.trials
  assert trial.state == State.COMPLETE and trial.value == pytest.approx(0.55)
  assert len(seen['paths']) == 2 and all(os.path.isfile(p) for p in seen['paths'])
  assert seen['reference'] == os.path.join(study_dir, 'trials', '0000')
  assert all(v < 0 for v in trial.intermediate_values.values())  # Negated bits: higher is better.


def test_shipped_spaces_fit_their_configs():
  comparisons = search_space.load(
    str(REPO / 'configs' / 'spaces' / 'comparisons.py'), load_config('default')
  )
  assert comparisons['model.frame_sizes'].choices == ('(16,)', '(16, 64)')
  assert search_space.to_config(
    load_config('default'), {'model.frame_sizes': '(16,)'}
  ).model.frame_sizes == (16,)
  assert [len(v) for v in tune.grid(comparisons).values()] == [2, 2, 2, 2]
  small = search_space.load(str(REPO / 'configs' / 'spaces' / 'small.py'), tiny())
  tune.check_objective('val_bits', small)


def test_missing_driver_is_one_line(tmp_path, corpus):
  study_dir = tmp_path / 'study'
  space = write_space(tmp_path / 'space.py', "{'model.dim': [16, 32]}")
  proc = run_cli(
    f'--study_dir={study_dir}',
    f'--config={TINY}',
    f'--data_dir={corpus}',
    f'--space={space}',
    '--storage=mysql://tuner:secret@dbhost/studies',
    timeout=120,
  )
  assert proc.returncode != 0 and 'Traceback' not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1] == (
    'samplernn-tune: --storage=mysql://tuner:***@dbhost/studies: the driver of mysql:// '
    '(Python module MySQLdb) is not installed; write mysql+pymysql:// and pip install '
    'pymysql.'
  )
  assert not study_dir.exists()


# ---------------------------------------------------------------------------------------
# The --trials cap, and workers on PostgreSQL
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def postgres_url():
  """A throwaway PostgreSQL server (Debian's binaries) for this module: its URL.

  Socket only (no TCP port to collide on), fsync off, in a folder of its own in /tmp: as
  root, initdb refuses to run and the server runs as the postgres user, who cannot enter
  pytest's folders (root's alone).
  """
  initdb = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb'))
  missing = []
  if not initdb:
    missing.append("Debian's postgresql (apt-get install -y postgresql)")
  if importlib.util.find_spec('psycopg2') is None:
    missing.append("psycopg2 (pip install -e '.[postgres]')")
  if missing:
    if os.environ.get('CI') == 'true':
      pytest.fail(
        f'CI must run the PostgreSQL tests; they need {" and ".join(missing)} '
        '(.ci/run installs them).'
      )
    pytest.skip(f'The PostgreSQL tests need {" and ".join(missing)}.')
  bindir = os.path.dirname(initdb[-1])
  as_postgres = ['runuser', '-u', 'postgres', '--'] if os.geteuid() == 0 else []
  root = tempfile.mkdtemp(prefix='samplernn-pg-')
  if as_postgres:
    shutil.chown(root, 'postgres')
  data = os.path.join(root, 'data')
  pg_ctl = [*as_postgres, os.path.join(bindir, 'pg_ctl'), '-D', data]
  try:
    subprocess.run(
      [*as_postgres, initdb[-1], '-D', data, '-U', 'postgres', '--auth=trust'],
      check=True,
      capture_output=True,
    )
    subprocess.run(
      [
        *pg_ctl,
        '-l',
        os.path.join(root, 'log'),
        '-w',
        '-o',
        f"-c listen_addresses='' -c unix_socket_directories={root} -c fsync=off",
        'start',
      ],
      check=True,
      capture_output=True,
    )
    yield f'postgresql+psycopg2://postgres@/postgres?host={root}'
  finally:
    subprocess.run([*pg_ctl, '-m', 'immediate', 'stop'], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


# A worker process: joins the study, waits for the go, then either fails the stale trials or
# runs one trial under a cap of two.
RACER = """
import os, sys, time, warnings
import optuna
from samplernn_jax.search import tune
url, study_name, action, ready, go = sys.argv[1:]
optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
study = optuna.load_study(study_name=study_name, storage=tune.make_storage(url, 1, 1))
open(ready, 'w').close()
while not os.path.exists(go):
  time.sleep(0.01)

def objective(trial):
  time.sleep(1.0)  # Still running while the others ask.
  return trial.suggest_float('x', 0.0, 1.0)
if action == 'fail_stale':
  optuna.storages.fail_stale_trials(study)
else:
  study.optimize(tune.capped(objective, 2), n_trials=1, catch=(Exception,))
"""


def race(tmp_path, url: str, action: str, processes: int = 4) -> optuna.Study:
  """A new study in ``url``, after ``processes`` racers did ``action`` in it at once."""
  study_name = tmp_path.name  # The PostgreSQL server serves every test of the module.
  storage = tune.make_storage(url, 1, 1)
  study = optuna.create_study(storage=storage, study_name=study_name)
  if action == 'fail_stale':
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')  # Optuna's hint that heartbeats go with optimize().
      trial = study.ask()
    storage.record_heartbeat(trial._trial_id)  # Stale after its 1 s of grace.
  stale_at = time.monotonic() + 1.5
  ready = [str(tmp_path / f'ready{i}') for i in range(processes)]
  go = tmp_path / 'go'
  racers = [
    subprocess.Popen([sys.executable, '-c', RACER, url, study_name, action, r, str(go)], cwd=REPO)
    for r in ready
  ]
  deadline = time.monotonic() + 60
  while not all(map(os.path.exists, ready)) and time.monotonic() < deadline:
    time.sleep(0.05)
  # The racers may be ready within the grace (imports cached): the trial must be stale first.
  time.sleep(max(0.0, stale_at - time.monotonic()))
  go.touch()
  assert [p.wait(timeout=60) for p in racers] == [0] * processes
  return optuna.load_study(study_name=study_name, storage=storage)


def database_url(database: str, tmp_path, request) -> str:
  if database == 'postgres':
    return request.getfixturevalue('postgres_url')
  return tune.default_storage(str(tmp_path))


@pytest.mark.parametrize('database', ['sqlite', pytest.param('postgres', marks=pytest.mark.slow)])
def test_trials_cap_is_kept_by_the_database(tmp_path, database, request):
  """Four processes that share no lock ask at once under a cap of two: two trials run."""
  study = race(tmp_path, database_url(database, tmp_path, request), 'capped')
  assert [t.state for t in study.trials] == [State.COMPLETE] * 2 + [State.FAIL] * 2
  for t in study.trials[2:]:
    assert t.user_attrs['over_cap'] == 2 and not t.params  # Failed before it sampled.
  assert tune.trial_counts(study) == {'finished': 2, 'running': 0, 'waiting': 0}


@pytest.mark.parametrize('database', ['sqlite', pytest.param('postgres', marks=pytest.mark.slow)])
def test_a_stale_trial_is_requeued_once(tmp_path, database, request):
  """Four workers find one stale trial at once: one retry (SQLite: see make_storage)."""
  study = race(tmp_path, database_url(database, tmp_path, request), 'fail_stale')
  assert [t.state for t in study.trials] == [State.FAIL, State.WAITING]


@pytest.mark.slow
@pytest.mark.filterwarnings('ignore::optuna.exceptions.ExperimentalWarning')
def test_postgres_workers_resume_a_killed_trial_and_keep_the_cap(tmp_path, corpus, postgres_url):
  """Worker A is killed mid-trial; B (A's study_dir) resumes it; C, another study_dir (as on
  another machine: no lock shared with B), joins; --trials=3 ends with three finished."""
  space_file = write_space(tmp_path / 'space.py', "{'model.rnn_type': ['gru']}")
  dirs = {w: str(tmp_path / d) for w, d in (('A', 'study'), ('B', 'study'), ('C', 'other'))}
  logs = {w: str(tmp_path / f'{w}.log') for w in 'BC'}

  def worker(name, **kwargs):
    args = [
      f'--study_dir={dirs[name]}',
      f'--storage={postgres_url}',
      '--study_name=machines',
      f'--config={TINY}',
      *TRAIN_FLAGS[1:],
      '--config.train.num_epochs=2',
      '--config.train.log_every_steps=1',
      '--config.train.print_every_seconds=0',  # A line per step: the test waits for one.
      '--config.train.checkpoint_every_steps=10',
      f'--data_dir={corpus}',
      f'--space={space_file}',
      '--trials=3',
      '--heartbeat_seconds=1',
      '--grace_seconds=2',
    ]
    return subprocess.Popen(
      [sys.executable, '-m', 'samplernn_jax.commands.tune', *args], cwd=REPO, text=True, **kwargs
    )

  a = worker('A', stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
  for line in a.stdout:
    if '(30),' in line:  # Step 30 of 100: checkpoints at 10, 20, 30 are written or on the way.
      a.kill()
      break
  a.wait(timeout=60)
  killed_at = checkpoint_lib.latest_step(os.path.join(dirs['A'], 'trials', '0000'))
  assert killed_at is not None and killed_at < 100, killed_at

  storage = tune.make_storage(postgres_url, 1, 2)
  retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number
  with open(logs['B'], 'w') as b_out, open(logs['C'], 'w') as c_out:
    b = worker('B', stdout=b_out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not any(
      retried(t) == 0 and t.state == State.RUNNING
      for t in optuna.load_study(study_name='machines', storage=storage).trials
    ):
      assert time.monotonic() < deadline and b.poll() is None, open(logs['B']).read()[-4000:]
      time.sleep(0.5)
    c = worker('C', stdout=c_out, stderr=subprocess.STDOUT)  # Once B holds the retry.
    assert b.wait(timeout=240) == 0, open(logs['B']).read()[-4000:]
    assert c.wait(timeout=240) == 0, open(logs['C']).read()[-4000:]

  study = optuna.load_study(study_name='machines', storage=storage)
  done = [t for t in study.trials if t.state == State.COMPLETE]
  assert len(done) == 3 and tune.trial_counts(study)['finished'] == 3
  assert study.trials[0].state == State.FAIL  # A's, stale, re-queued once:
  (retry,) = [t for t in study.trials if retried(t) is not None]
  assert retried(retry) == 0 and retry in done and retry.user_attrs['workdir'] == 'trials/0000'
  assert f'Resumed from checkpoint {killed_at} ' in open(logs['B']).read()
  assert [
    r['step'] for r in workdir_lib.read_records(os.path.join(dirs['A'], 'trials', '0000'), 'train')
  ] == list(range(1, 101))
  # Trials a worker created after the three places were taken never ran.
  for t in study.trials[1:]:
    assert t in done or t.user_attrs.get('over_cap') == 3, t
  assert os.listdir(os.path.join(dirs['C'], 'trials'))  # C ran a trial of its own.
