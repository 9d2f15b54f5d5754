"""Writing clips: names, temperatures, seeds, sizes, scores, and the chunked write.

``generate_files`` is what ``samplernn-generate`` runs. Files are named like PRiSM's
generate.py: ``out/piano_e=STEP(i)_t=TEMP.wav`` (``out/piano_e=STEP_t=TEMP.wav`` for one
sequence). Every chunk is appended to the files as soon as it is generated, in a scratch
folder ``.generating-*`` beside the output; complete clips are moved into place at the end
(with ``keep`` only the best by score), so an existing file is never replaced by a partial
one, and a stopped run keeps what it made in that folder.
"""

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from typing import Any, Optional, Sequence

import jax
import ml_collections
import numpy as np
import soundfile as sf
import tqdm

from samplernn_jax import audio_io
from samplernn_jax import checkpoint
from samplernn_jax import files
from samplernn_jax import metrics
from samplernn_jax import quantization
from samplernn_jax import sampler as sampler_lib
from samplernn_jax import silence_guard
from samplernn_jax.listening import clip_score
from samplernn_jax.listening import gallery

# ---------------------------------------------------------------------------------------
# Inputs: temperatures, names, seed audio
# ---------------------------------------------------------------------------------------


def pad_temperatures(temperatures: Sequence[float], num_seqs: int) -> list:
  """PRiSM's rule: pad with the last value, or truncate, to ``num_seqs`` values."""
  temps = [float(t) for t in temperatures]
  if not temps:
    raise ValueError('--temperature is empty; give at least one value, e.g. 0.95.')
  if any(not t > 0 for t in temps):
    raise ValueError(f'--temperature={temps}: every temperature must be positive.')
  return (temps + [temps[-1]] * num_seqs)[:num_seqs]


def _stem(output: str) -> str:
  return output[: -len('.wav')] if output.endswith('.wav') else output


def output_paths(output: str, step: int, temperatures: Sequence[float]) -> list:
  """PRiSM's names: ``{stem}_e={step}({i})_t={t}.wav``, no ``(i)`` for a single sequence."""
  base = f'{_stem(output)}_e={step}'
  if len(temperatures) == 1:
    return [f'{base}_t={temperatures[0]}.wav']
  return [f'{base}({i})_t={t}.wav' for i, t in enumerate(temperatures)]


def epoch_clips(
  params, config: ml_collections.ConfigDict, out_dir: str, run_id: str, epoch: int, rng
) -> list:
  """``max_generate_per_epoch`` clips of ``output_file_dur`` s as PRiSM names them
  (training writes them after its checkpoints).

  ``ID_e=EPOCH_t=TEMP.wav``, or ``ID_e=EPOCH(i)_t=TEMP.wav`` for several clips;
  temperatures as PRiSM (the last one repeats). Returns ``[(path, float audio)]``.
  """
  g = config.generate
  count = int(g.max_generate_per_epoch)
  if count <= 0:
    return []
  temps = pad_temperatures(list(g.temperatures), count)
  num_samples = max(1, int(round(float(g.output_file_dur) * int(config.data.sample_rate))))
  levels_BxN = sampler_lib.generate(
    params,
    config.model,
    num_samples,
    temps,
    rng,
    chunk_size=int(g.chunk_size),
    guard=silence_guard.from_config(config),
  )
  os.makedirs(out_dir, exist_ok=True)
  paths = output_paths(os.path.join(out_dir, f'{run_id}.wav'), epoch, temps)
  clips = []
  for levels_N, path in zip(levels_BxN, paths):
    audio_N = np.asarray(
      quantization.decode(levels_N, config.model.q_type, config.model.q_levels), np.float32
    )
    audio_io.write_wav_atomic(path, audio_N, int(config.data.sample_rate))
    clips.append((path, audio_N))
  return clips


def load_seed_levels(path: str, model_config, sample_rate: int, offset: int = 0) -> np.ndarray:
  """The seed file from sample ``offset`` on (at ``sample_rate``), quantized: int32 ``[T]``.

  Raises ValueError naming the file when it is shorter than one top-tier frame.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: seed audio file not found.')
  try:
    audio = np.clip(audio_io.read_mono(path, sample_rate), -1.0, 1.0)
  except audio_io.AudioError as e:
    raise ValueError(f'{path}: cannot decode the seed audio: {e}.') from None
  if offset < 0 or offset >= audio.shape[0]:
    raise ValueError(
      f'{path}: --seed_offset={offset} lies outside the seed '
      f'({audio.shape[0]} samples at {sample_rate} Hz).'
    )
  audio = audio[offset:]
  big = int(model_config.frame_sizes[-1])
  if audio.shape[0] < big:
    raise ValueError(
      f'{path}: the seed has {audio.shape[0]} samples from offset {offset} at '
      f'{sample_rate} Hz; it needs at least one top-tier frame ({big} samples).'
    )
  return quantization.encode(audio, model_config.q_type, model_config.q_levels)


# ---------------------------------------------------------------------------------------
# Sizes, checked before anything starts
# ---------------------------------------------------------------------------------------

# Host bytes per sample of a chunk in flight, per sequence: the int32 levels, their decode and
# the device's int32 copy (an upper bound). Finished chunks are on disk, not in memory.
_BYTES_PER_SAMPLE = 16
# Bytes per sample of the one clip being scored at a time (read back, float64 features).
_SCORING_BYTES_PER_SAMPLE = 32
# File descriptors the process holds besides the clips (libraries, logs, the checkpoint).
_SPARE_FILES = 64


def _available_memory() -> Optional[int]:
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  try:
    return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
  except (ValueError, OSError, AttributeError):
    return None


def _gb(num_bytes: float) -> str:
  return f'{num_bytes / 1e9:.3g} GB'


def check_sizes(
  num_seqs: int, num_samples: int, out_dir: str, chunk_size: int = sampler_lib.DEFAULT_CHUNK_SIZE
) -> None:
  """Raises ValueError when the clips cannot fit: open files, memory or disk.

  The message says the limit and what to lower.
  """
  try:
    import resource  # pylint: disable=g-import-not-at-top

    open_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
  except (ImportError, ValueError):
    open_limit = -1  # No such limit here (RLIM_INFINITY is -1 as well).
  if open_limit > 0 and num_seqs + _SPARE_FILES > open_limit:
    raise ValueError(
      f'--num_seqs={num_seqs} writes {num_seqs} files at once, but this process '
      f'may open {open_limit} (ulimit -n); generate at most '
      f'{max(1, open_limit - _SPARE_FILES)} sequences per run, or raise the '
      'limit.'
    )
  chunk = min(chunk_size, num_samples)
  memory = 2 * num_seqs * chunk * _BYTES_PER_SAMPLE + num_samples * _SCORING_BYTES_PER_SAMPLE
  available = _available_memory()
  if available is not None and memory > available:
    raise ValueError(
      f'--num_seqs={num_seqs} x {num_samples} samples needs about '
      f'{_gb(memory)} of memory, {_gb(available)} is available; lower '
      '--num_seqs or --duration.'
    )
  disk = num_seqs * (2 * num_samples + 44)  # 16-bit PCM WAV.
  free = shutil.disk_usage(out_dir).free
  if disk > free:
    raise ValueError(
      f'{out_dir}: the clips need {_gb(disk)} of disk, {_gb(free)} is free; '
      'lower --num_seqs or --duration, or choose another --output folder.'
    )


# ---------------------------------------------------------------------------------------
# Curation
# ---------------------------------------------------------------------------------------


def score_clips(
  paths: Sequence[str],
  mean_log_likelihood_B: np.ndarray,
  profile: Optional[clip_score.Profile] = None,
) -> list:
  """One dict per clip file: ``clip_score``'s score and parts; higher is better.

  Read back from the files, one at a time, so memory does not grow with the batch.
  ``profile``: the run's profile of its training audio (``clip_score.load_profile``);
  without one only the penalties count. ``log_likelihood``, the model's mean
  log p(x_t | x_<t) of its own output (nats), is reported but not scored: it is highest
  for silence and stuck levels, and files scored later have none.
  """
  scores = []
  for path, ll in zip(paths, mean_log_likelihood_B):
    score = clip_score.score_file(path, profile)
    del score['path']  # The scratch path; the clip's own name is added by _curate.
    scores.append(dict(score, log_likelihood=float(ll)))
  return scores


# ---------------------------------------------------------------------------------------
# The run: check, plan, sample into a scratch folder, curate, move into place
# ---------------------------------------------------------------------------------------


def generate_files(
  workdir: str,
  output: str,
  *,
  step: Optional[int] = None,
  num_seqs: int = 1,
  duration: float = 3.0,
  temperatures: Optional[Sequence[float]] = None,
  seed_audio: Optional[str] = None,
  seed_offset: int = 0,
  rng_seed: int = 0,
  keep: Optional[int] = None,
  plot: bool = False,
  profile_dir: Optional[str] = None,
  chunk_size: Optional[int] = None,
  progress: bool = True,
  overwrite: bool = False,
  dtype: Optional[str] = None,
  max_silence: Optional[float] = None,
) -> dict:
  """Generates ``num_seqs`` clips of ``duration`` seconds into WAV files.

  ``temperatures=None`` takes the run's ``config.generate.temperatures``; ``dtype`` (the
  matmul dtype, 'float32' or 'bfloat16') replaces the checkpoint's ``config.model.dtype``;
  ``max_silence`` (seconds; 0: off) the run's ``config.generate.max_silence``: the silence
  guard (``silence_guard``) revives a sequence silent that long, and the scores file lists
  each revival under its sequence.
  Everything that can fail on the inputs (flags, checkpoint, seed file, an existing clip
  without ``overwrite``, sizes that do not fit) fails before any generation starts, with a
  message naming the file or flag and the reason. Clips are written into a scratch folder
  ``.generating-*`` beside the output and moved into place only when complete, so an
  existing file is never replaced by a partial one; a stopped run leaves its partial clips
  in that folder.

  Returns ``{'paths': [kept wav paths], 'scores': [every sequence's score dict], 'step': N,
  'samples_per_second': total, 'x_real_time': audio seconds per wall second per sequence,
  'gallery': the run's rebuilt page when the clips are in the workdir, else None}``.
  """
  output = _check_request(
    workdir,
    output,
    num_seqs=num_seqs,
    duration=duration,
    keep=keep,
    temperatures=temperatures,
    seed_audio=seed_audio,
    max_silence=max_silence,
  )
  out_dir = os.path.dirname(output)
  with _claim(output):
    return _generate(
      workdir,
      output,
      out_dir,
      step=step,
      num_seqs=num_seqs,
      duration=duration,
      temperatures=temperatures,
      seed_audio=seed_audio,
      seed_offset=seed_offset,
      rng_seed=rng_seed,
      keep=keep,
      plot=plot,
      profile_dir=profile_dir,
      chunk_size=chunk_size,
      progress=progress,
      overwrite=overwrite,
      dtype=dtype,
      max_silence=max_silence,
    )


@contextlib.contextmanager
def _claim(output: str):
  """Holds the names of ``output``'s clips for this run: a second run is refused at once.

  An exclusive ``flock`` on ``.STEM.generating.lock`` beside the clips: the kernel drops it on
  any exit, kill -9 included, so a stale lock never blocks the next run.
  """
  lock = os.path.join(
    os.path.dirname(output), f'.{os.path.basename(_stem(output))}.generating.lock'
  )
  while True:
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      os.close(fd)
      raise ValueError(
        f'--output={output}: another samplernn-generate is writing these clips now; wait '
        'for it to finish, or choose another --output.'
      ) from None
    try:  # The holder before us may have removed the file as we opened it: lock the new one.
      if os.stat(lock).st_ino == os.fstat(fd).st_ino:
        break
    except FileNotFoundError:
      pass
    os.close(fd)
  try:
    yield
  finally:
    with contextlib.suppress(OSError):
      os.remove(lock)
    os.close(fd)


def _generate(
  workdir: str,
  output: str,
  out_dir: str,
  *,
  step,
  num_seqs,
  duration,
  temperatures,
  seed_audio,
  seed_offset,
  rng_seed,
  keep,
  plot,
  profile_dir,
  chunk_size,
  progress,
  overwrite,
  dtype,
  max_silence,
) -> dict:
  """``generate_files`` once the request is checked and its names are claimed."""
  plan = _plan(
    workdir,
    output,
    out_dir,
    step=step,
    num_seqs=num_seqs,
    duration=duration,
    temperatures=temperatures,
    seed_audio=seed_audio,
    seed_offset=seed_offset,
    chunk_size=chunk_size,
    overwrite=overwrite,
    dtype=dtype,
  )
  # Read before sampling: a damaged profile is named now (and ignored), not after the work.
  profile = clip_score.load_profile(workdir)
  guard = silence_guard.from_config(plan.config, max_silence)
  sampler = sampler_lib.Sampler(plan.config.model, num_seqs, plan.chunk_size, guard=guard)
  # Nothing is final until complete (and, with keep, scored): write to a scratch folder.
  scratch = tempfile.mkdtemp(prefix='.generating-', dir=out_dir)
  scratch_paths = [os.path.join(scratch, os.path.basename(p)) for p in plan.paths]
  with _stop_on_signals() as signals:
    mean_ll_B, revivals, elapsed = _sample_into(
      scratch,
      scratch_paths,
      sampler,
      plan,
      guard=guard,
      rng_seed=rng_seed,
      profile_dir=profile_dir,
      progress=progress,
      desc=f'{num_seqs} x {duration:g} s',
      signals=signals,
    )

  scores = score_clips(scratch_paths, mean_ll_B, profile)
  for score, revived in zip(scores, revivals):
    score['revivals'] = revived
  order, kept = _curate(scores, plan, keep)
  # A move, not files.atomic_write: the clips were streamed into the scratch folder chunk by
  # chunk (a stopped run keeps them there), and each is complete before it moves.
  try:
    for i in kept:
      os.replace(scratch_paths[i], plan.paths[i])
  except OSError as e:
    raise OSError(
      e.errno, f'{e.strerror}; the finished clips not yet moved are in {scratch}', e.filename
    ) from None
  shutil.rmtree(scratch)
  scores_path = f'{_stem(output)}_e={plan.step}_scores.json'
  try:
    if plot:
      _plot(kept, plan)
    with files.atomic_write(scores_path) as f:
      json.dump(
        {
          'workdir': workdir,
          'step': plan.step,
          'rng_seed': rng_seed,
          'seed_audio': seed_audio,
          'duration': duration,
          'silence_guard': None if guard is None else _describe(guard, plan.sample_rate),
          'ranking': order,
          'sequences': scores,
        },
        f,
        indent=2,
      )
  except OSError as e:
    raise OSError(
      e.errno, f'{e.strerror}; the clips themselves are in place in {out_dir}', e.filename
    ) from None
  run = os.path.realpath(workdir)
  page = None
  if out_dir == run or out_dir.startswith(run + os.sep):
    page = gallery.refresh(workdir)  # Clips written anywhere in the run: its page lists them.
  return {
    'gallery': page,
    'paths': [plan.paths[i] for i in kept],
    'scores': scores,
    'step': plan.step,
    'scores_path': scores_path,
    'samples_per_second': num_seqs * plan.num_samples / elapsed,
    'x_real_time': metrics.x_real_time(plan.num_samples, elapsed, plan.sample_rate),
  }


def _describe(guard: silence_guard.Guard, sample_rate: int) -> dict:
  return {
    'max_silence': guard.max_silent_samples / sample_rate,
    'silence_rms': guard.silence_rms,
    'how': guard.describe(sample_rate),
  }


def _check_request(
  workdir: str,
  output: str,
  *,
  num_seqs: int,
  duration: float,
  keep: Optional[int],
  temperatures: Optional[Sequence[float]],
  seed_audio: Optional[str],
  max_silence: Optional[float] = None,
) -> str:
  """The checks that need no checkpoint; returns ``output`` resolved, its folder writable."""
  if max_silence is not None:
    silence_guard.check_seconds(max_silence)
  if num_seqs < 1:
    raise ValueError(f'--num_seqs={num_seqs} must be at least 1.')
  if not 0 < duration < float('inf'):
    raise ValueError(f'--duration={duration} must be a positive, finite number of seconds.')
  if keep is not None and not 1 <= keep <= num_seqs:
    raise ValueError(f'--keep={keep} must lie between 1 and --num_seqs={num_seqs}.')
  if temperatures is not None:
    pad_temperatures(temperatures, num_seqs)  # Bad values fail before the checkpoint loads.
  if not os.path.isdir(workdir):
    raise FileNotFoundError(
      f'{workdir}: no such workdir; pass --workdir of a training run or an imported PRiSM model.'
    )
  if seed_audio is not None and not os.path.isfile(seed_audio):
    raise FileNotFoundError(f'{seed_audio}: seed audio file not found.')
  output = resolve_output(output)
  files.check_writable(os.path.dirname(output), '--output')
  return output


def resolve_output(output: str) -> str:
  """``output`` as an absolute path with links and ``..`` resolved as the kernel will.

  ``run/../missing/../x.wav`` is ``x.wav`` on paper, but the kernel cannot step out of a
  folder that does not exist: raises FileNotFoundError naming it, before any work.
  """
  parts = output.split(os.sep)
  for i, part in enumerate(parts[:-1]):
    folder = os.sep.join(parts[:i]) or (os.sep if output.startswith(os.sep) else os.curdir)
    if part == os.pardir and not os.path.isdir(folder):
      raise FileNotFoundError(
        f'--output={output}: goes through {folder}, which is not a folder; create it, or '
        'give the path without "..".'
      )
  return os.path.realpath(output)


@dataclasses.dataclass(frozen=True)
class _Plan:
  """A request resolved against its checkpoint, every part of it checked."""

  params: Any
  config: ml_collections.ConfigDict
  step: int
  temperatures: list  # One per sequence.
  num_samples: int  # Per sequence.
  paths: list  # The clips' final paths, one per sequence.
  seed_levels: Optional[np.ndarray]
  chunk_size: int

  @property
  def sample_rate(self) -> int:
    return int(self.config.data.sample_rate)


def _plan(
  workdir: str,
  output: str,
  out_dir: str,
  *,
  step: Optional[int],
  num_seqs: int,
  duration: float,
  temperatures: Optional[Sequence[float]],
  seed_audio: Optional[str],
  seed_offset: int,
  chunk_size: Optional[int],
  overwrite: bool,
  dtype: Optional[str],
) -> _Plan:
  """Loads the checkpoint and settles temperatures, sizes, names and seed; raises on any
  that cannot work (an existing clip without ``overwrite`` among them)."""
  params, config, step = checkpoint.restore_params(workdir, step)
  if dtype is not None:
    config.model.dtype = dtype
  if temperatures is None:
    temperatures = tuple(config.generate.temperatures)
  temps = pad_temperatures(temperatures, num_seqs)
  sample_rate = int(config.data.sample_rate)
  num_samples = max(1, int(round(duration * sample_rate)))
  chunk_size = int(chunk_size or config.generate.chunk_size)
  check_sizes(num_seqs, num_samples, out_dir, chunk_size)
  paths = output_paths(output, step, temps)
  existing = [p for p in paths if os.path.exists(p)]
  if existing and not overwrite:
    more = f' (and {len(existing) - 1} more)' if len(existing) > 1 else ''
    raise ValueError(
      f'{existing[0]}{more} exists; pass --overwrite to replace it once the '
      'new clip is complete, or choose another --output.'
    )
  seed_levels = None
  if seed_audio is not None:
    seed_levels = load_seed_levels(seed_audio, config.model, sample_rate, seed_offset)
  return _Plan(
    params=params,
    config=config,
    step=step,
    temperatures=temps,
    num_samples=num_samples,
    paths=paths,
    seed_levels=seed_levels,
    chunk_size=chunk_size,
  )


class Stopped(Exception):
  """SIGINT or SIGTERM stopped the run after a chunk; ``signum`` says which."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = signum


@contextlib.contextmanager
def _stop_on_signals():
  """Yields a list that SIGINT or SIGTERM appends its number to; the writer checks it per chunk.

  Handled, not left to Python's default: a process started in the background by a shell
  ignores SIGINT, and a SIGTERM would end it without saying where its clips are. A second
  signal gets the previous handler (Ctrl-C twice: at once). Outside the main thread, where
  handlers cannot be set, nothing changes.
  """
  arrived, previous = [], {}

  def handler(signum, frame):
    del frame
    arrived.append(signum)
    signal.signal(signum, previous[signum])

  if threading.current_thread() is not threading.main_thread():
    yield arrived
    return
  for s in (signal.SIGINT, signal.SIGTERM):
    previous[s] = signal.signal(s, handler)
  try:
    yield arrived
  finally:
    for s, h in previous.items():
      signal.signal(s, h)


# A run expected to take longer than this says so as soon as its speed is measured.
LONG_RUN_SECONDS = 3600
# Samples (all sequences together) from which a run is timed up front with a probe chunk, which
# costs one more compile: 32 clips of 30 s at 16 kHz. Below it, a run that could take an hour
# would have to be slower than about 4,000 samples per second.
PROBE_ABOVE_SAMPLES = 2**24


class _ChunkWriter:
  """The sampler's callbacks: appends every chunk to the clips' files, shows progress in
  audio seconds against wall seconds, says early when the run will be long, and stops the
  run after a chunk once a signal arrived."""

  def __init__(self, files: list, plan: _Plan, *, progress: bool, desc: str, signals=()):
    self._files, self._plan, self._signals = files, plan, signals
    rate = plan.sample_rate
    self._bar = tqdm.tqdm(
      total=plan.num_samples / rate,
      unit='s',
      disable=not progress,
      desc=desc,
      dynamic_ncols=True,
      # Audio seconds made against wall seconds; the postfix is the speed.
      bar_format='{l_bar}{bar}| {n:.1f}/{total:.1f} s of audio [{elapsed}<{remaining}{postfix}]',
    )
    self._start = time.perf_counter()
    self.written = 0  # Samples per sequence in the files.
    self.elapsed = 0.0  # Seconds from the start to close().

  def __call__(self, levels_BxC: np.ndarray, done: int) -> None:
    m = self._plan.config.model
    audio_BxC = quantization.decode(levels_BxC, m.q_type, m.q_levels)
    for f, audio_C in zip(self._files, audio_BxC):
      f.write(audio_C)
      f.flush()
    self.written = done + levels_BxC.shape[1]
    self._bar.update(levels_BxC.shape[1] / self._plan.sample_rate)
    speed = metrics.x_real_time(
      self.written, time.perf_counter() - self._start, self._plan.sample_rate
    )
    self._bar.set_postfix_str(f'{speed:.2f}x real time')
    if self._signals and self.written < self._plan.num_samples:
      name = signal.Signals(self._signals[0]).name
      raise Stopped(
        f'stopped by {name} after {self.written} of {self._plan.num_samples} samples per clip',
        self._signals[0],
      )

  def on_speed(self, samples_per_second: float) -> None:
    """The sampler's first timed chunk: one line if the run will take over LONG_RUN_SECONDS,
    saying how long, and that Ctrl-C keeps what is done."""
    total = self._plan.num_samples / max(samples_per_second, 1e-9)
    if total > LONG_RUN_SECONDS:
      self._bar.write(
        f'About {total / 3600:.1f} h for {len(self._files)} '
        f'clip{"s" if len(self._files) != 1 else ""} of '
        f'{self._plan.num_samples / self._plan.sample_rate:g} s at this speed; Ctrl-C stops '
        'the run and keeps the finished part of each clip. Fewer --num_seqs or a shorter '
        '--duration take less.',
        file=sys.stderr,
      )

  def close(self) -> None:
    self.elapsed = time.perf_counter() - self._start
    self._bar.close()
    for f in self._files:
      f.close()


def _open_wavs(paths: Sequence[str], sample_rate: int) -> list:
  """16-bit mono WAV files open for writing; none stays open if one fails."""
  opened = []
  try:
    for path in paths:
      opened.append(sf.SoundFile(path, 'w', samplerate=sample_rate, channels=1, subtype='PCM_16'))
  except (sf.LibsndfileError, OSError):
    for f in opened:
      f.close()
    raise
  return opened


def _sample_into(
  scratch: str,
  paths: Sequence[str],
  sampler: sampler_lib.Sampler,
  plan: _Plan,
  *,
  guard: Optional[silence_guard.Guard],
  rng_seed: int,
  profile_dir: Optional[str],
  progress: bool,
  desc: str,
  signals=(),
) -> tuple:
  """Samples the clips into ``paths`` (in ``scratch``) chunk by chunk; no clip is held in
  memory, however long.

  Returns ``(mean_log_likelihood_B, revivals, seconds)``: ``revivals[i]`` lists the silence
  guard's revivals of sequence ``i`` (``{'sequence', 'time', 'how'}``, time in seconds). A
  failure removes ``scratch`` when nothing was written yet, and otherwise leaves the partial
  clips there. A signal in ``signals`` (``_stop_on_signals``) raises Stopped after the chunk
  in flight, naming ``scratch``.
  """
  try:
    writer = _ChunkWriter(
      _open_wavs(paths, plan.sample_rate), plan, progress=progress, desc=desc, signals=signals
    )
  except BaseException:
    shutil.rmtree(scratch, ignore_errors=True)
    raise
  revivals = [[] for _ in paths]

  def revived(sequence: int, sample: int, code: int) -> None:
    how = guard.describe(plan.sample_rate, code)
    time_s = round(sample / plan.sample_rate, 3)
    revivals[sequence].append({'sequence': sequence, 'time': time_s, 'how': how})

  try:
    if profile_dir:
      jax.profiler.start_trace(profile_dir)
    _, mean_ll_B = sampler.generate(
      plan.params,
      plan.num_samples,
      plan.temperatures,
      jax.random.key(rng_seed),
      seed_levels=plan.seed_levels,
      callback=writer,
      return_log_likelihood=True,
      on_revival=revived,
      keep_output=False,
      on_speed=writer.on_speed if len(paths) * plan.num_samples >= PROBE_ABOVE_SAMPLES else None,
    )
  except Stopped as e:
    writer.close()  # The headers then say how long the partial clips are.
    raise Stopped(f'{e}; the finished part of each clip is in {scratch}', e.signum) from None
  except BaseException:
    if not writer.written:
      shutil.rmtree(scratch, ignore_errors=True)  # Only empty headers: nothing to keep.
    else:
      print(f'Stopped; the partial clips are in {scratch}', file=sys.stderr)
    raise
  finally:
    writer.close()
    if profile_dir:
      print(f'Writing the profile to {profile_dir} ...', file=sys.stderr)
      jax.profiler.stop_trace()
  return mean_ll_B, revivals, writer.elapsed


def _curate(scores: list, plan: _Plan, keep: Optional[int]) -> tuple:
  """``(ranking, kept indices)``: the best ``keep`` by score, or all; notes each sequence's
  index, temperature, file and whether it is kept in its score dict."""
  order = sorted(range(len(scores)), key=lambda i: -scores[i]['score'])
  kept = sorted(order[:keep]) if keep else list(range(len(scores)))
  for i, s in enumerate(scores):
    s.update(
      index=i,
      temperature=plan.temperatures[i],
      kept=i in kept,
      file=os.path.basename(plan.paths[i]),
    )
  return order, kept


def _plot(kept: Sequence[int], plan: _Plan) -> None:
  """A waveform-over-spectrogram PNG beside each kept clip (the gallery's picture, larger)."""
  for i in kept:
    audio_T = audio_io.read_mono(plan.paths[i], plan.sample_rate)
    gallery.plot_clip(
      audio_T,
      plan.sample_rate,
      plan.paths[i][: -len('.wav')] + '.png',
      figsize=gallery.LARGE_FIGSIZE,
      title=os.path.basename(plan.paths[i]),
    )
