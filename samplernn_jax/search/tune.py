"""A hyper-parameter search on Optuna (``samplernn-tune``); every trial is a normal run.

The study lives in a database (``--storage``, default ``sqlite:///S/study.db``); trial N
trains with ``train.train_and_evaluate`` (what ``samplernn-train`` runs) in
``S/trials/NNNN/``, reports each validation to Optuna and is pruned when it falls behind.
SPACE fields also given as ``--config.x.y`` are fixed at that value and not searched.
Workers are processes that share the study: ``--workers=K`` starts K here, the same command
on other machines with one PostgreSQL/MySQL ``--storage`` URL adds theirs. ``--trials=N``
is a rule the database keeps: a trial runs only in one of the study's first N places
(``capped``), however many workers ask at once, wherever they run. Each worker beats a
heartbeat into the database; a worker that dies leaves its trial to go stale, and
the next worker to ask for a trial re-runs it with the same parameters in the same
workdir, so it resumes from its latest checkpoint.
"""

import contextlib
import dataclasses
import fcntl
import math
import os
import shlex
import signal
import socket
import subprocess
import time
from typing import Callable, Optional, Sequence
import warnings

from absl import logging
import optuna
import sqlalchemy

from samplernn_jax import processes
from samplernn_jax import workdir as workdir_lib
from samplernn_jax.search import space as search_space

OBJECTIVES = {'val_bits': 'minimize', 'clip_score': 'maximize'}
PRUNERS = ('median', 'hyperband', 'none')
SAMPLERS = ('tpe', 'random', 'grid')
Retry = optuna.storages.RetryHeartbeatStaleTrialCallback


class TuneError(ValueError):
  """Input that cannot start a search; the message says what to change."""


class Interrupted(BaseException):
  """SIGINT or SIGTERM stopped a worker; its trial is checkpointed and left running.

  Not an Exception, so that Optuna does not record the trial as failed: its heartbeat
  stops, and the next worker resumes it once it is stale.
  """


# ---------------------------------------------------------------------------------------
# Study: storage, sampler, pruner
# ---------------------------------------------------------------------------------------


def default_storage(study_dir: str) -> str:
  return 'sqlite:///' + os.path.join(os.path.abspath(study_dir), 'study.db')


# The Python module SQLAlchemy imports for a URL's driver: what to install, or to write instead.
_DRIVERS = {
  'psycopg2': "pip install 'samplernn_jax[postgres]' (psycopg2-binary)",
  # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3.
  'psycopg': "write postgresql+psycopg2:// and pip install 'samplernn_jax[postgres]'",
  'pymysql': 'pip install pymysql',
  'MySQLdb': 'write mysql+pymysql:// and pip install pymysql',  # A bare mysql:// (mysqlclient).
}


def _storage_error(url: str, error: Exception) -> str:
  """One line saying why ``url`` does not open, its password hidden."""
  try:
    parsed = sqlalchemy.engine.make_url(url)
  except sqlalchemy.exc.ArgumentError:
    return (
      f'--storage={url}: not a database URL; write e.g. sqlite:///PATH, '
      'postgresql+psycopg2://USER:PASSWORD@HOST/DB or mysql+pymysql://USER:PASSWORD@HOST/DB.'
    )
  shown = parsed.render_as_string(hide_password=True)
  missing = error.__cause__ if isinstance(error, ImportError) else None
  if isinstance(missing, ModuleNotFoundError):
    hint = _DRIVERS.get(missing.name, f'install the package that provides {missing.name}')
    return (
      f'--storage={shown}: the driver of {parsed.drivername}:// (Python module '
      f'{missing.name}) is not installed; {hint}.'
    )
  if isinstance(error, sqlalchemy.exc.NoSuchModuleError):
    return f'--storage={shown}: SQLAlchemy knows no database {parsed.drivername}://.'
  reason = str(getattr(error, 'orig', None) or error).strip().splitlines()[0]
  if parsed.drivername.startswith('sqlite') and parsed.database:
    return (
      f'{parsed.database}: cannot open the study database: {reason}; restore it from a copy, '
      'or start the study in a new --study_dir.'
    )
  return f'--storage={shown}: cannot open the database: {reason}'


def make_storage(
  url: str, heartbeat_seconds: int = 20, grace_seconds: int = 60
) -> optuna.storages.RDBStorage:
  """The study database, with heartbeats: a trial silent for ``grace_seconds`` is re-queued.

  TuneError when the URL's driver is missing or the database does not open.
  """
  sqlite = url.startswith('sqlite')
  engine_kwargs = {}
  if sqlite:
    # Workers write heartbeats and results at once: wait for SQLite's file lock, don't fail.
    # No BEGIN from the driver: _begin_immediate() issues its own (see there).
    engine_kwargs = {'connect_args': {'timeout': 60, 'isolation_level': None}}
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
      storage = optuna.storages.RDBStorage(
        url,
        engine_kwargs=engine_kwargs,
        heartbeat_interval=heartbeat_seconds,
        grace_period=grace_seconds,
        heartbeat_stale_trial_callback=Retry(max_retry=None, inherit_intermediate_values=True),
      )
  # DatabaseError, not only OperationalError: a damaged SQLite file is 'not a database'.
  except (ImportError, sqlalchemy.exc.ArgumentError, sqlalchemy.exc.DatabaseError) as e:
    raise TuneError(_storage_error(url, e)) from None
  if sqlite:
    _begin_immediate(storage.engine)
  return storage


def _begin_immediate(engine) -> None:
  """Every SQLite transaction takes the database's write lock when it begins.

  Optuna makes its read-then-write steps atomic with row locks (SELECT ... FOR UPDATE):
  failing a stale trial once, so that it is re-queued once. SQLite ignores FOR UPDATE, and
  its driver begins a transaction only at the first write, after the read: three processes
  failing one stale trial at once re-queued it twice in 2 tries of 8 (two retries would run
  in one folder). BEGIN IMMEDIATE serializes the workers' transactions instead (SQLAlchemy's
  recipe for pysqlite); test_a_stale_trial_is_requeued_once.
  """
  sqlalchemy.event.listen(engine, 'begin', lambda conn: conn.exec_driver_sql('BEGIN IMMEDIATE'))


def make_pruner(name: str, startup_trials: int = 5, warmup_steps: int = 0):
  if name == 'median':
    return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_steps)
  if name == 'hyperband':
    # The resource is the train step; the first validation is the first rung.
    return optuna.pruners.HyperbandPruner(min_resource=max(warmup_steps, 1))
  return optuna.pruners.NopPruner()


def grid(space: search_space.Space) -> dict:
  """``{name: [values]}`` of a space of lists and integer ranges, or TuneError."""
  values = {}
  for k, dist in space.items():
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
      values[k] = list(dist.choices)
    elif isinstance(dist, optuna.distributions.IntDistribution) and not dist.log:
      values[k] = list(range(dist.low, dist.high + 1, dist.step))
    else:
      raise TuneError(f'--sampler=grid: {k} is a continuous range; give it a list of values.')
  return values


def make_sampler(name: str, space: search_space.Space, seed: Optional[int]):
  if name == 'grid':
    return optuna.samplers.GridSampler(grid(space), seed=seed)
  if name == 'random':
    return optuna.samplers.RandomSampler(seed=seed)
  return optuna.samplers.TPESampler(seed=seed)


def check_objective(objective: str, space: search_space.Space) -> None:
  """Refuses what the objective cannot compare or compute, before any trial."""
  if objective not in OBJECTIVES:
    raise TuneError(f'--objective={objective}: use one of {sorted(OBJECTIVES)}.')
  if objective == 'val_bits':
    mixed = [k for k in search_space.QUANTIZATION_FIELDS if search_space.varies(space, k)]
    if mixed:
      raise TuneError(
        f'--objective=val_bits cannot rank a space that varies {", ".join(mixed)}: bits per '
        'sample are only comparable between models on the same quantization levels. Use '
        '--objective=clip_score, or one study per quantization (--config.model.q_type=...) '
        'with those fields out of the space.'
      )


def open_study(storage, study_name: str, objective: str, pruner, sampler) -> optuna.Study:
  study = optuna.create_study(
    storage=storage,
    study_name=study_name,
    load_if_exists=True,
    direction=OBJECTIVES[objective],
    pruner=pruner,
    sampler=sampler,
  )
  stored = study.user_attrs.get('objective')
  if stored is None:
    study.set_user_attr('objective', objective)
  elif stored != objective:
    raise TuneError(
      f'study {study_name!r} optimizes {stored}; --objective={objective} cannot '
      'join it (pass --study_name for a new study).'
    )
  return study


# ---------------------------------------------------------------------------------------
# One trial: a normal training run in S/trials/NNNN
# ---------------------------------------------------------------------------------------


def suggest(trial: optuna.Trial, space: search_space.Space) -> dict:
  """The trial's value of every field (a re-queued trial gets its original values)."""
  params = {}
  for name, dist in space.items():
    if isinstance(dist, optuna.distributions.FloatDistribution):
      params[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    elif isinstance(dist, optuna.distributions.IntDistribution):
      params[name] = trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    else:
      params[name] = trial.suggest_categorical(name, dist.choices)
  return params


def train_command(config_file: str, overrides: dict, workdir: str, data_dir: Optional[str]) -> list:
  """``samplernn-train`` arguments that train this config further in ``workdir``."""
  args = ['samplernn-train', f'--config={config_file}', f'--workdir={workdir}']
  if data_dir:
    args.append(f'--data_dir={data_dir}')
  for k, v in overrides.items():
    args.append(f'--config.{k}={v!r}' if isinstance(v, tuple) else f'--config.{k}={v}')
  return args


def validation_history(workdir: str) -> list:
  """``[(step, val_bits_per_sample)]`` from the run's validation records, across resumes."""
  return [
    (r['step'], r['val_bits_per_sample'])
    for r in workdir_lib.read_records(workdir, 'val')
    if 'val_bits_per_sample' in r
  ]


@contextlib.contextmanager
def _signal_watch():
  """Yields a function telling whether SIGINT/SIGTERM arrived meanwhile.

  The training loop takes these signals itself (it checkpoints and returns normally), so a
  worker learns of them from the wakeup fd, which sees every signal that has a Python handler.
  """
  got = set()
  try:
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
  except ValueError:  # Not the main thread: nothing to watch.
    yield lambda: False
    return

  def arrived():
    with contextlib.suppress(BlockingIOError):
      got.update(reader.recv(1024))
    return bool(got & {signal.SIGINT, signal.SIGTERM})

  try:
    yield arrived
  finally:
    signal.set_wakeup_fd(previous)
    reader.close()
    writer.close()


@dataclasses.dataclass(frozen=True)
class Studio:
  """What a trial uses of the layers beside the search, handed in by the command (the search
  imports neither the listening room nor the corpus).

  * ``hooks(config, on_eval)``: the ``train.Hooks`` of a trial's training run;
  * ``demo_corpus(workdir, sample_rate)``: the data folder of a study without ``--data_dir``;
  * ``score_clips(workdir, num_seqs, seconds)``: ``{clip path: curation score}`` of clips
    generated from the trial's last checkpoint (``--objective=clip_score``).
  """

  hooks: Callable
  demo_corpus: Callable[[str, int], str]
  score_clips: Callable[[str, int, float], dict]


class Objective:
  """``trial -> objective value``: trains, reports each validation, may prune, may score clips."""

  def __init__(
    self,
    config,
    config_file,
    overrides,
    space,
    study_dir,
    data_dir,
    objective,
    *,
    studio: Studio,
    clips=4,
    clip_seconds=2.0,
    prune=True,
  ):
    self.config, self.overrides = config, overrides
    self.config_file = os.path.abspath(config_file)
    self.space, self.study_dir, self.data_dir = space, os.path.abspath(study_dir), data_dir
    self.objective, self.clips, self.clip_seconds, self.prune = (
      objective,
      clips,
      clip_seconds,
      prune,
    )
    self.studio = studio

  def __call__(self, trial: optuna.Trial) -> float:
    from samplernn_jax import train  # JAX starts in workers only, not in a --workers parent.

    # A re-queued trial carries its original's user attributes, so it finds that workdir and
    # resumes from its checkpoint (the same thing RetryHeartbeatStaleTrialCallback's
    # retried_trial_number names).
    rel = trial.user_attrs.get('workdir') or os.path.join('trials', f'{trial.number:04d}')
    trial.set_user_attr('workdir', rel)
    workdir = os.path.join(self.study_dir, rel)
    params = suggest(trial, self.space)
    config = search_space.to_config(self.config, params)
    overrides = {
      **self.overrides,
      **{k: search_space.decode(self.config, k, v) for k, v in params.items()},
    }
    trial.set_user_attr('num_epochs', int(config.train.num_epochs))
    trial.set_user_attr(
      'command', shlex.join(train_command(self.config_file, overrides, workdir, self.data_dir))
    )
    logging.info('Trial %d in %s: %s', trial.number, workdir, params)
    # Without --data_dir each trial trains on a demo corpus of its own, as samplernn-train.
    data_dir = self.data_dir or self.studio.demo_corpus(workdir, int(config.data.sample_rate))
    try:
      with _signal_watch() as interrupted:
        train.train_and_evaluate(
          config, workdir, data_dir, hooks=self.studio.hooks(config, self._reporter(trial))
        )
        if interrupted():
          raise Interrupted(
            f'stopped by a signal; trial {trial.number} ({workdir}) is '
            'checkpointed and goes to the next worker once its heartbeat is '
            'stale.'
          )
      return self._value(trial, workdir)
    except optuna.TrialPruned:
      raise
    except Exception as e:
      trial.set_user_attr('error', f'{type(e).__name__}: {e}')
      raise

  def _reporter(self, trial: optuna.Trial):
    # The pruner ranks intermediate values in the study's direction; for clip_score
    # (maximized) validation bits go in negated so that higher is still better.
    sign = 1.0 if self.objective == 'val_bits' else -1.0

    def on_eval(step: int, val_metrics: dict):
      bits = val_metrics.get('val_bits_per_sample')
      if bits is None or not math.isfinite(float(bits)):
        return
      with warnings.catch_warnings():
        # A resumed trial may validate a step its first run already reported; the first stays.
        warnings.simplefilter('ignore')
        trial.report(sign * float(bits), step)
      if self.prune and trial.should_prune():
        raise optuna.TrialPruned(f'validation {float(bits):.4f} bits/sample at step {step}')

    return on_eval

  def _value(self, trial: optuna.Trial, workdir: str) -> float:
    history = validation_history(workdir)
    if history:
      step, bits = min(history, key=lambda r: r[1])
      trial.set_user_attr('best_val_bits', bits)
      trial.set_user_attr('best_step', step)
    if self.objective == 'val_bits':
      if not history:
        raise ValueError(
          f'{workdir}: no validation ran; --objective=val_bits needs '
          'validation files (config.data.val_frac > 0).'
        )
      return min(b for _, b in history)
    scores = self.studio.score_clips(workdir, self.clips, self.clip_seconds)
    trial.set_user_attr(
      'clip_scores',
      {os.path.relpath(path, workdir): float(score) for path, score in scores.items()},
    )
    return float(sum(scores.values()) / max(len(scores), 1))


# ---------------------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------------------


def _retry_history(trial: optuna.trial.FrozenTrial) -> list:
  """The numbers of the trials this one retries, the first try first; [] for a first try."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
    return Retry.retry_history(trial)


def place(trial: optuna.trial.FrozenTrial, trials: Sequence[optuna.trial.FrozenTrial]) -> int:
  """The place of ``trial``'s first try among the study's first tries (``trials``), from 0.

  The storage numbers trials one at a time (Optuna locks the study's row to create one), so
  every trial numbered below one exists when it does: its place is known at once and never
  changes, on whichever machine it is asked. A retry keeps its first try's place.
  """
  history = _retry_history(trial)
  first = history[0] if history else trial.number
  return sum(1 for t in trials if t.number < first and not _retry_history(t))


class OverCap(Exception):
  """A trial created when the study's ``--trials`` places were taken; it does not run."""


def capped(objective, num_trials: int):
  """``objective`` for the trials in the study's first ``num_trials`` places.

  Any other trial (two workers asked for the last place at once) fails at once, marked
  ``over_cap``, and counts for nothing: this is what holds ``--trials`` across machines.
  """

  def run(trial: optuna.Trial) -> float:
    trials = trial.study.get_trials(deepcopy=False)
    (this,) = [t for t in trials if t.number == trial.number]
    if place(this, trials) >= num_trials:
      message = (
        f'over the cap: --trials={num_trials} places were taken when it was created; not run'
      )
      trial.set_user_attr('over_cap', num_trials)
      trial.set_user_attr('error', message)
      raise OverCap(message)
    return objective(trial)

  return run


def trial_counts(study: optuna.Study) -> dict:
  """Finished trials (not a stale trial that was re-queued, nor one over the cap), running,
  waiting."""
  trials = study.get_trials(deepcopy=False)
  retried = {n for t in trials for n in _retry_history(t)}
  finished = [
    t
    for t in trials
    if t.state.is_finished() and t.number not in retried and 'over_cap' not in t.user_attrs
  ]
  state = optuna.trial.TrialState
  return {
    'finished': len(finished),
    'running': sum(t.state == state.RUNNING for t in trials),
    'waiting': sum(t.state == state.WAITING for t in trials),
  }


class _AskLock:
  """A file lock held from counting trials until the next trial exists.

  Only to spare waste: ``capped`` keeps ``--trials`` without it. But K workers here whose
  trials end together (same shapes, same data) would all count the last free place and each
  create a trial for it, all but one over the cap (without this lock
  test_two_workers_share_one_study saw such a trial in one run of two).
  """

  def __init__(self, path: str):
    self._file = open(path, 'a')
    self._held = False

  def acquire(self):
    fcntl.flock(self._file, fcntl.LOCK_EX)
    self._held = True

  def release(self):
    if self._held:
      self._held = False
      fcntl.flock(self._file, fcntl.LOCK_UN)


def work(
  study: optuna.Study, objective, num_trials: int, study_dir: str, poll_seconds: float = 5.0
) -> None:
  """Runs trials until the study has ``num_trials`` finished ones.

  ``capped`` keeps that number, through the database; the count before asking only spares
  creating trials that could not run. A worker with nothing to start while others still run
  waits, so that a trial whose worker dies is re-run here once its heartbeat is stale.
  """
  lock = _AskLock(os.path.join(study_dir, '.ask.lock'))
  run_capped = capped(objective, num_trials)

  def run(trial: optuna.Trial) -> float:
    lock.release()  # The trial exists: the next worker here may count.
    return run_capped(trial)

  while True:
    lock.acquire()
    try:
      with warnings.catch_warnings():
        warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # Re-queues the trials of dead workers.
      n = trial_counts(study)
      if n['finished'] >= num_trials:
        return
      if n['waiting'] or n['finished'] + n['running'] < num_trials:
        # Any trial failure is recorded (state FAIL, user attribute 'error') and the search
        # goes on: a diverged or misconfigured trial is a result, not a reason to stop.
        study.optimize(run, n_trials=1, catch=(Exception,))
        continue
    finally:
      lock.release()
    time.sleep(poll_seconds)


def spawn_workers(count: int, worker_argv: list, seed: Optional[int], sampler: str) -> int:
  """Runs ``count`` processes of ``worker_argv`` (this command, less ``--workers`` and
  ``--seed``) as single workers; returns the worst exit status.

  Each worker ends when this process does, even by kill -9 (``processes``), so a restart
  never runs beside orphans. With ``seed``, worker i samples with ``seed + i``: one seed in
  every worker would have them all propose the same parameters. Not for the grid, whose seed
  fixes the order of the combinations that all workers number alike.
  """
  env = dict(os.environ)
  # Workers sharing one accelerator must not each reserve most of its memory up front.
  env.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  procs = []
  for i in range(count):
    seed_arg = [] if seed is None else [f'--seed={seed if sampler == "grid" else seed + i}']
    procs.append(
      subprocess.Popen([*worker_argv, *seed_arg, '--workers=1'], env=processes.child_env(env))
    )

  def forward(signum, frame):
    for p in procs:
      if p.poll() is None:
        p.send_signal(signum)

  previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    return max(p.wait() for p in procs)
  finally:
    for s, h in previous.items():
      signal.signal(s, h)


# ---------------------------------------------------------------------------------------
# Starting a search: every input checked before the database is made
# ---------------------------------------------------------------------------------------


def load_study(study_dir: str, storage: Optional[str], study_name: str) -> optuna.Study:
  """The study of ``study_dir`` (or of the ``storage`` URL), for its report; or TuneError."""
  url = storage or default_storage(study_dir)
  if not storage and not os.path.exists(os.path.join(os.path.abspath(study_dir), 'study.db')):
    raise TuneError(f'--study_dir={study_dir}: no study.db here; pass --storage.')
  try:
    return optuna.load_study(study_name=study_name, storage=make_storage(url))
  except KeyError:
    raise TuneError(f'no study {study_name!r} in {url}; pass --study_name.') from None


def load_space(
  space_file: Optional[str], config, fixed: Sequence[str], objective: str, data_dir: Optional[str]
) -> search_space.Space:
  """The space of ``space_file`` less the ``fixed`` fields; TuneError or SpaceError if it
  cannot drive a search toward ``objective``.

  A field set on the command line (``fixed``) is a decision already made: it leaves the
  space, so one SPACE file serves e.g. a study per quantization (--config.model.q_type=...).
  """
  if not space_file:
    raise TuneError('pass --space=FILE (e.g. configs/spaces/small.py).')
  if data_dir is not None and not os.path.isdir(data_dir):
    raise TuneError(f'--data_dir={data_dir}: not a directory.')
  space = search_space.load(space_file, config)
  fixed = sorted(set(space) & set(fixed))
  for name in fixed:
    del space[name]
  if fixed:
    logging.info('Fixed by --config overrides, not searched: %s', ', '.join(fixed))
  if not space:
    raise TuneError(
      f'--space={space_file}: every field is fixed by a --config override; '
      'nothing is left to search.'
    )
  check_objective(objective, space)
  return space


def can_prune(pruner: str, objective: str, space: search_space.Space) -> bool:
  """Whether trials may be pruned: not when the pruner's validation bits do not compare."""
  if pruner == 'none':
    return False
  if objective == 'clip_score' and any(
    search_space.varies(space, k) for k in search_space.QUANTIZATION_FIELDS
  ):
    logging.warning(
      'Not pruning: the pruner compares validation bits, which differ between '
      'quantizations this space mixes.'
    )
    return False
  return True


def start_study(
  study_dir: str,
  storage: Optional[str],
  study_name: str,
  *,
  space: search_space.Space,
  objective: str,
  pruner,
  sampler: str,
  seed: Optional[int],
  heartbeat_seconds: int = 20,
  grace_seconds: int = 60,
) -> optuna.Study:
  """Creates or joins the study, with a ``sampler`` (name) seeded for this worker."""
  optuna_sampler = make_sampler(sampler, space, seed)  # The grid refuses ranges here.
  if not storage:  # The default database is a file in study_dir.
    os.makedirs(study_dir, exist_ok=True)
  database = make_storage(
    storage or default_storage(study_dir), heartbeat_seconds, grace_seconds
  )  # A URL that does not open leaves no study_dir.
  os.makedirs(study_dir, exist_ok=True)
  study = open_study(database, study_name, objective, pruner, optuna_sampler)
  held = len(study.get_trials(deepcopy=False))
  if seed is not None and held and sampler != 'grid':
    # A restarted worker with its old seed would propose its first values again.
    study.sampler = make_sampler(sampler, space, seed + 1000 * held)
  return study


def grid_size(space: search_space.Space) -> int:
  """The grid's combinations: more trials than this would repeat one."""
  return math.prod(len(v) for v in grid(space).values())
