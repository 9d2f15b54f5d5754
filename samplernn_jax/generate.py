"""samplernn-generate: WAV files from a checkpoint, optionally seeded, scored and plotted.

    samplernn-generate --workdir=runs/piano --output=out/piano.wav --num_seqs=8 \
        --duration=10 --temperature=0.95,0.9

The model config comes from the checkpoint. Files are named like PRiSM's generate.py:
``out/piano_e=STEP(i)_t=TEMP.wav`` (``out/piano_e=STEP_t=TEMP.wav`` for one sequence).
Every chunk is appended to the files as soon as it is generated, in a scratch folder
``.generating-*`` beside the output; complete clips are moved into place at the end (with
``--keep=K`` only the best ``K`` by score), so an existing file is never replaced by a
partial one, and a stopped run keeps what it made in that folder. Existing names stop
the run before any work unless ``--overwrite`` is given.
"""

import json
import os
import shutil
import sys
import tempfile
import time
from typing import Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np
import soundfile as sf
import tqdm

from samplernn_jax import audio_io
from samplernn_jax import backend
from samplernn_jax import checkpoint
from samplernn_jax import cli
from samplernn_jax import clip_score
from samplernn_jax import gallery
from samplernn_jax import metrics
from samplernn_jax import quantization
from samplernn_jax import sampler as sampler_lib

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
  return output[:-len('.wav')] if output.endswith('.wav') else output


def output_paths(output: str, step: int, temperatures: Sequence[float]) -> list:
  """PRiSM's names: ``{stem}_e={step}({i})_t={t}.wav``, no ``(i)`` for a single sequence."""
  base = f'{_stem(output)}_e={step}'
  if len(temperatures) == 1:
    return [f'{base}_t={temperatures[0]}.wav']
  return [f'{base}({i})_t={t}.wav' for i, t in enumerate(temperatures)]


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
    raise ValueError(f'{path}: --seed_offset={offset} lies outside the seed '
                     f'({audio.shape[0]} samples at {sample_rate} Hz).')
  audio = audio[offset:]
  big = int(model_config.frame_sizes[-1])
  if audio.shape[0] < big:
    raise ValueError(f'{path}: the seed has {audio.shape[0]} samples from offset {offset} at '
                     f'{sample_rate} Hz; it needs at least one top-tier frame ({big} samples).')
  return quantization.encode(audio, model_config.q_type, model_config.q_levels)


# ---------------------------------------------------------------------------------------
# Sizes, checked before anything starts
# ---------------------------------------------------------------------------------------

# Host bytes per generated sample of one sequence: the int32 levels, their float64 decode
# for scoring, and the device's int32 copy of a chunk (an upper bound).
_BYTES_PER_SAMPLE = 16
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


def check_sizes(num_seqs: int, num_samples: int, out_dir: str) -> None:
  """Raises ValueError when the clips cannot fit: open files, memory or disk.

  The message says the limit and what to lower.
  """
  try:
    import resource  # pylint: disable=g-import-not-at-top
    open_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
  except (ImportError, ValueError):
    open_limit = -1  # No such limit here (RLIM_INFINITY is -1 as well).
  if open_limit > 0 and num_seqs + _SPARE_FILES > open_limit:
    raise ValueError(f'--num_seqs={num_seqs} writes {num_seqs} files at once, but this process '
                     f'may open {open_limit} (ulimit -n); generate at most '
                     f'{max(1, open_limit - _SPARE_FILES)} sequences per run, or raise the '
                     'limit.')
  memory = num_seqs * num_samples * _BYTES_PER_SAMPLE
  available = _available_memory()
  if available is not None and memory > available:
    raise ValueError(f'--num_seqs={num_seqs} x {num_samples} samples needs about '
                     f'{_gb(memory)} of memory, {_gb(available)} is available; lower '
                     '--num_seqs or --duration.')
  disk = num_seqs * (2 * num_samples + 44)  # 16-bit PCM WAV.
  free = shutil.disk_usage(out_dir).free
  if disk > free:
    raise ValueError(f'{out_dir}: the clips need {_gb(disk)} of disk, {_gb(free)} is free; '
                     'lower --num_seqs or --duration, or choose another --output folder.')


# ---------------------------------------------------------------------------------------
# Curation
# ---------------------------------------------------------------------------------------

def score_sequences(levels_BxT: np.ndarray, mean_log_likelihood_B: np.ndarray, model_config,
                    sample_rate: int, profile: Optional[clip_score.Profile] = None) -> list:
  """One dict per sequence: ``clip_score``'s score and parts; higher is better.

  ``profile``: the run's profile of its training audio (``clip_score.load_profile``);
  without one only the penalties count. ``log_likelihood``, the model's mean
  log p(x_t | x_<t) of its own output (nats), is reported but not scored: it is highest
  for silence and stuck levels, and files scored later have none.
  """
  audio_BxT = quantization.decode(levels_BxT, model_config.q_type, model_config.q_levels)
  return [dict(clip_score.score_audio(audio_T, sample_rate, profile), log_likelihood=float(ll))
          for audio_T, ll in zip(audio_BxT, mean_log_likelihood_B)]


# ---------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------

def plot_clip(audio: np.ndarray, sample_rate: int, path: str) -> None:
  """Waveform over spectrogram, as a PNG at ``path``."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
  t = np.arange(audio.shape[0]) / sample_rate
  top.plot(t, audio, linewidth=0.3)
  top.set_ylim(-1, 1)
  top.set_ylabel('amplitude')
  top.set_title(os.path.basename(path))
  nfft = min(1024, max(16, 2 ** int(np.log2(max(16, audio.shape[0] // 8)))))
  bottom.specgram(audio + 1e-9, NFFT=nfft, Fs=sample_rate, noverlap=nfft // 2, cmap='magma')
  bottom.set_xlabel('seconds')
  bottom.set_ylabel('Hz')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------

def generate_files(workdir: str, output: str, step: Optional[int] = None, num_seqs: int = 1,
                   duration: float = 3.0, temperatures: Optional[Sequence[float]] = None,
                   seed_audio: Optional[str] = None, seed_offset: int = 0, rng_seed: int = 0,
                   keep: Optional[int] = None, plot: bool = False,
                   profile_dir: Optional[str] = None, chunk_size: Optional[int] = None,
                   progress: bool = True, overwrite: bool = False) -> dict:
  """Generates ``num_seqs`` clips of ``duration`` seconds into WAV files.

  ``temperatures=None`` takes the run's ``config.generate.temperatures``.
  Everything that can fail on the inputs (flags, checkpoint, seed file, an existing clip
  without ``overwrite``, sizes that do not fit) fails before any generation starts, with a
  message naming the file or flag and the reason. Clips are written into a scratch folder
  ``.generating-*`` beside the output and moved into place only when complete, so an
  existing file is never replaced by a partial one; a stopped run leaves its partial clips
  in that folder.

  Returns ``{'paths': [kept wav paths], 'scores': [every sequence's score dict], 'step': N,
  'samples_per_second': total, 'x_real_time': audio seconds per wall second per sequence}``.
  """
  if num_seqs < 1:
    raise ValueError(f'--num_seqs={num_seqs} must be at least 1.')
  if not 0 < duration < float('inf'):
    raise ValueError(f'--duration={duration} must be a positive, finite number of seconds.')
  if keep is not None and not 1 <= keep <= num_seqs:
    raise ValueError(f'--keep={keep} must lie between 1 and --num_seqs={num_seqs}.')
  if temperatures is not None:
    pad_temperatures(temperatures, num_seqs)  # Bad values fail before the checkpoint loads.
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f'{workdir}: no such workdir; pass --workdir of a training run '
                            'or an imported PRiSM model.')
  if seed_audio is not None and not os.path.isfile(seed_audio):
    raise FileNotFoundError(f'{seed_audio}: seed audio file not found.')
  out_dir = os.path.dirname(os.path.abspath(output))
  cli.check_writable(out_dir, '--output')
  params, config, step = checkpoint.restore_params(workdir, step)
  if temperatures is None:
    temperatures = tuple(config.generate.get('temperatures', (0.95,)))
  temps = pad_temperatures(temperatures, num_seqs)
  sample_rate = int(config.data.sample_rate)
  m = config.model
  num_samples = max(1, int(round(duration * sample_rate)))
  check_sizes(num_seqs, num_samples, out_dir)
  final_paths = output_paths(output, step, temps)
  existing = [p for p in final_paths if os.path.exists(p)]
  if existing and not overwrite:
    more = f' (and {len(existing) - 1} more)' if len(existing) > 1 else ''
    raise ValueError(f'{existing[0]}{more} exists; pass --overwrite to replace it once the '
                     'new clip is complete, or choose another --output.')
  seed_levels = None
  if seed_audio is not None:
    seed_levels = load_seed_levels(seed_audio, m, sample_rate, seed_offset)
  chunk_size = int(chunk_size or config.generate.get('chunk_size', 16384))

  # Nothing is final until complete (and, with --keep, scored): write to a scratch folder.
  scratch = tempfile.mkdtemp(prefix='.generating-', dir=out_dir)
  write_paths = [os.path.join(scratch, os.path.basename(p)) for p in final_paths]
  sampler = sampler_lib.Sampler(m, num_seqs, chunk_size)
  files = []
  try:
    files = [sf.SoundFile(p, 'w', samplerate=sample_rate, channels=1, subtype='PCM_16')
             for p in write_paths]
  except (sf.LibsndfileError, OSError):
    for f in files:
      f.close()
    shutil.rmtree(scratch, ignore_errors=True)
    raise
  bar = tqdm.tqdm(total=num_samples, unit='sample', unit_scale=True, disable=not progress,
                  desc=f'{num_seqs} x {duration:g} s', dynamic_ncols=True,
                  # tqdm's own rate would be a second speed; the postfix is the one.
                  bar_format='{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]')
  start = time.perf_counter()
  written = [0]

  def write_chunk(levels_BxC, done):
    audio = quantization.decode(levels_BxC, m.q_type, m.q_levels)
    for f, a in zip(files, audio):
      f.write(a)
      f.flush()
    written[0] = done + levels_BxC.shape[1]
    bar.update(levels_BxC.shape[1])
    speed = metrics.x_real_time(written[0], time.perf_counter() - start, sample_rate)
    bar.set_postfix_str(f'{speed:.2f}x real time')

  try:
    if profile_dir:
      jax.profiler.start_trace(profile_dir)
    levels, mean_ll = sampler.generate(params, num_samples, temps, jax.random.key(rng_seed),
                                       seed_levels=seed_levels, callback=write_chunk,
                                       return_log_likelihood=True)
  except BaseException:
    if not written[0]:
      shutil.rmtree(scratch, ignore_errors=True)  # Only empty headers: nothing to keep.
    else:
      print(f'Stopped; the partial clips are in {scratch}', file=sys.stderr)
    raise
  finally:
    elapsed = time.perf_counter() - start
    bar.close()
    for f in files:
      f.close()
    if profile_dir:
      print(f'Writing the profile to {profile_dir} ...', file=sys.stderr)
      jax.profiler.stop_trace()

  scores = score_sequences(levels, mean_ll, m, sample_rate, clip_score.load_profile(workdir))
  order = sorted(range(num_seqs), key=lambda i: -scores[i]['score'])
  kept = sorted(order[:keep]) if keep else list(range(num_seqs))
  for i, s in enumerate(scores):
    s.update(index=i, temperature=temps[i], kept=i in kept,
             file=os.path.basename(final_paths[i]))
  for i in kept:
    os.replace(write_paths[i], final_paths[i])
  shutil.rmtree(scratch)
  paths = [final_paths[i] for i in kept]
  if plot:
    for i in kept:
      audio = quantization.decode(levels[i], m.q_type, m.q_levels)
      plot_clip(audio, sample_rate, final_paths[i][:-len('.wav')] + '.png')
  scores_path = f'{_stem(output)}_e={step}_scores.json'
  with open(scores_path + '.tmp', 'w') as f:
    json.dump({'workdir': workdir, 'step': step, 'rng_seed': rng_seed, 'seed_audio': seed_audio,
               'duration': duration, 'ranking': order, 'sequences': scores}, f, indent=2)
  os.replace(scores_path + '.tmp', scores_path)
  if out_dir.startswith(os.path.abspath(workdir) + os.sep):
    gallery.refresh(workdir)  # Clips written into the run: its page lists them.
  return {'paths': paths, 'scores': scores, 'step': step, 'scores_path': scores_path,
          'samples_per_second': num_seqs * num_samples / elapsed,
          'x_real_time': metrics.x_real_time(num_samples, elapsed, sample_rate)}


# ---------------------------------------------------------------------------------------
# samplernn-generate
# ---------------------------------------------------------------------------------------

# Defined when the command runs, not on import: the library functions above are also
# imported by training and tests, whose programs define flags of the same names.
def _define_flags():
  program = cli.program()
  flags.DEFINE_string('workdir', None, 'Run folder holding checkpoints/ (training or '
                      'samplernn-import-prism wrote it).', **program)
  flags.DEFINE_integer('step', None, 'Checkpoint step to load; default: the latest.',
                       **program)
  flags.DEFINE_string('output', 'generated.wav', 'Output path; each file is named '
                      '{stem}_e={step}({i})_t={temperature}.wav like PRiSM.', **program)
  flags.DEFINE_integer('num_seqs', 1, 'Sequences generated side by side (one batch).',
                       **program)
  flags.DEFINE_float('duration', 3.0, 'Seconds of audio per sequence.', **program)
  flags.DEFINE_list('temperature', None, 'Sampling temperatures, one per sequence; padded '
                    'with the last value or truncated. Default: the run\'s '
                    'config.generate.temperatures.', **program)
  flags.DEFINE_string('seed_audio', None, 'Audio to prime every tier on (any length >= one '
                      'top frame); generation continues after its end.', **program)
  flags.DEFINE_integer('seed_offset', 0, 'Skip this many samples (at the model sample rate) '
                       'at the start of the seed audio.', **program)
  flags.DEFINE_integer('rng_seed', 0, 'Random seed of the sampling.', **program)
  flags.DEFINE_integer('keep', None, 'Write only the best KEEP sequences by score (all are '
                       'scored in {stem}_e={step}_scores.json).', **program)
  flags.DEFINE_bool('plot', False, 'Write a waveform + spectrogram PNG beside each clip.',
                    **program)
  flags.DEFINE_string('profile_dir', None, 'Write a jax.profiler trace of the generation '
                      'here (open with TensorBoard or Perfetto).', **program)
  flags.DEFINE_integer('chunk_size', None, 'Samples per compiled call; default: '
                       'config.generate.chunk_size.', **program)
  flags.DEFINE_bool('overwrite', False, 'Replace clips of the same names (each only once '
                    'its new version is complete); without it, existing names stop the run.',
                    **program)
  flags.DEFINE_string('compilation_cache_dir', None, 'Where compiled samplers are kept so the '
                      'next run skips compiling; default $JAX_COMPILATION_CACHE_DIR or '
                      '~/.cache/samplernn_jax/jax; an empty value turns the cache off.',
                      **program)


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  backend.enable_compilation_cache(f.compilation_cache_dir)
  try:
    temps = None if f.temperature is None else [float(t) for t in f.temperature]
  except ValueError:
    raise app.UsageError(f'--temperature={",".join(f.temperature)}: not a list of '
                         'numbers.') from None
  result = generate_files(
      f.workdir, f.output, step=f.step, num_seqs=f.num_seqs, duration=f.duration,
      temperatures=temps, seed_audio=f.seed_audio, seed_offset=f.seed_offset,
      rng_seed=f.rng_seed, keep=f.keep, plot=f.plot, profile_dir=f.profile_dir,
      chunk_size=f.chunk_size, overwrite=f.overwrite)
  for path in result['paths']:
    print(f'Generated sample output to {path}')
  print(f'Scores: {result["scores_path"]} ({result["x_real_time"]:.2f}x real time per '
        f'sequence, {result["samples_per_second"]:,.0f} samples/s in all, compilation '
        'included)')


def run():
  _define_flags()
  flags.mark_flags_as_required(['workdir'])
  cli.run(_main, 'samplernn-generate')


if __name__ == '__main__':
  run()
