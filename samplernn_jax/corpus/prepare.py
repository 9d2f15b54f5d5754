"""Audio files cut into equal training chunks, as PRiSM's chunk_audio.py cuts them.

What ``samplernn-prepare`` runs. Each source (a file, or every audio file found under a
directory) is decoded (audio_io: soundfile, else PyAV), mixed to mono, resampled with soxr
to ``--sample_rate`` and cut into chunks exactly where chunk_audio.py cuts them:

* chunk k spans [k * (chunk - overlap), k * (chunk - overlap) + chunk) milliseconds,
  positions converted to samples as pydub does (``int(ms * rate / 1000)``);
* a chunk is kept only if it ends strictly before the end of the audio, measured in
  whole milliseconds as pydub's ``len()``; so the trailing partial chunk is dropped,
  and so is a last chunk ending exactly at the end (the reference's ``end >= len``);
* a chunk is dropped as silent when some stretch of ``int(chunk_length_ms / 2)`` ms,
  tried at every 1 ms offset, has an RMS at or below ``--silence_thresh_db`` dBFS
  (pydub's ``detect_silence(min_silence_len=chunk/2, silence_thresh=-64)``, computed
  here with NumPy on the 16-bit samples that would be written).

Chunks are 16-bit PCM WAV files ``{stem}_{k:05d}.wav``; k counts every chunk
position of the source, silent ones included, so a chunk starts at
``k * (chunk_length_ms - overlap_ms)`` ms into it. Two sources with the same stem
get a short hash of their path appended. Each chunk is written atomically; once all
chunks of a source are written, a manifest ``.samplernn-prepare/{stem}.json`` records
them, and a re-run skips that source unless it or the settings changed. A file that
cannot be decoded (empty, truncated, corrupt, not audio, NaN/inf samples) is reported
with its reason and skipped; the other files are still processed. A full disk stops the
run at once, with one line naming the device and the file.
"""

import concurrent.futures
import dataclasses
import errno
import hashlib
import json
import multiprocessing
import os
import signal

import numpy as np
import tqdm

from samplernn_jax import audio_io
from samplernn_jax import files
from samplernn_jax import processes

MANIFEST_DIR = '.samplernn-prepare'


@dataclasses.dataclass(frozen=True)
class Settings:
  """What determines the chunks of a source; a change re-does finished sources."""

  sample_rate: int = 16000
  chunk_length_ms: int = 8000
  overlap_ms: int = 1000
  silence_thresh_db: float = -64.0

  def check(self) -> None:
    """Raises ValueError naming the flag at fault."""
    if self.sample_rate <= 0:
      raise ValueError(
        f'--sample_rate={self.sample_rate} must be a positive rate in Hz, e.g. 16000.'
      )
    if self.chunk_length_ms <= 0:
      raise ValueError(f'--chunk_length_ms={self.chunk_length_ms} must be positive, e.g. 8000.')
    if not 0 <= self.overlap_ms < self.chunk_length_ms:
      raise ValueError(
        f'--overlap_ms={self.overlap_ms} must lie in [0, --chunk_length_ms={self.chunk_length_ms}).'
      )


@dataclasses.dataclass
class Result:
  """The outcome of one source file."""

  path: str
  status: str  # 'done', 'skipped' (finished by an earlier run) or 'failed'.
  chunks_written: int = 0
  chunks_silent: int = 0
  reason: str = ''
  clipped: float = 0.0  # Share of (float) source samples beyond +-1, clipped to full scale.


def chunk_bounds_ms(audio_len_ms: int, chunk_ms: int, overlap_ms: int) -> list[tuple[int, int]]:
  """[start, end) in ms of every full chunk chunk_audio.py would cut, in order."""
  bounds = []
  start, end = 0, chunk_ms
  while end < audio_len_ms:
    bounds.append((start, end))
    start = end - overlap_ms
    end = start + chunk_ms
  return bounds


def _ms_to_sample(ms, sample_rate: int):
  # pydub's frame_count(ms): int(ms * (frame_rate / 1000.0)).
  return (np.asarray(ms) * (sample_rate / 1000.0)).astype(np.int64)


def _length_ms(num_samples: int, sample_rate: int) -> int:
  # pydub's len(AudioSegment).
  return round(1000 * (num_samples / sample_rate))


def is_silent(
  chunk_pcm_N: np.ndarray, sample_rate: int, chunk_length_ms: int, silence_thresh_db: float
) -> bool:
  """pydub's detect_silence(chunk, int(chunk_length_ms / 2), thresh) is non-empty.

  ``chunk_pcm_N`` holds int16 samples. A window of ``int(chunk_length_ms / 2)`` ms
  starting at each whole millisecond is silent when its integer RMS (audioop.rms)
  is at most 10 ** (dB / 20) * 32768.
  """
  min_len_ms = int(chunk_length_ms / 2)
  seg_len_ms = _length_ms(len(chunk_pcm_N), sample_rate)
  if seg_len_ms < min_len_ms:
    return False
  starts_ms = np.arange(seg_len_ms - min_len_ms + 1)
  lo = np.minimum(_ms_to_sample(starts_ms, sample_rate), len(chunk_pcm_N))
  hi = np.minimum(_ms_to_sample(starts_ms + min_len_ms, sample_rate), len(chunk_pcm_N))
  squares = np.concatenate([[0], np.cumsum(chunk_pcm_N.astype(np.int64) ** 2)])
  counts = np.maximum(hi - lo, 1)
  rms = np.floor(np.sqrt((squares[hi] - squares[lo]) / counts))
  return bool(np.any(rms <= 10 ** (silence_thresh_db / 20) * 32768))


def _manifest_path(output_dir: str, stem: str) -> str:
  return os.path.join(output_dir, MANIFEST_DIR, stem + '.json')


def _source_id(path: str, settings: Settings) -> dict:
  stat = os.stat(path)
  return {
    'source': os.path.abspath(path),
    'size': stat.st_size,
    'mtime_ns': stat.st_mtime_ns,
    'settings': dataclasses.asdict(settings),
  }


def _read_manifest(path: str) -> dict | None:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def prepare_file(path: str, stem: str, output_dir: str, settings: Settings) -> Result:
  """Writes the chunks of one source; never raises for a bad file (see Result)."""
  manifest_path = _manifest_path(output_dir, stem)
  source_id = _source_id(path, settings)
  old = _read_manifest(manifest_path)
  if (
    old
    and all(old.get(k) == v for k, v in source_id.items())
    and all(os.path.exists(os.path.join(output_dir, c)) for c in old['chunks'])
  ):
    return Result(path, 'skipped', len(old['chunks']), old['silent'])
  try:
    samples_NxC, rate = audio_io.read_audio(path)
  except (audio_io.AudioError, OSError) as e:
    return Result(path, 'failed', reason=str(e))
  mono_N = audio_io.to_mono(samples_NxC)
  # Float files can exceed full scale; 16-bit chunks cannot, so those samples are clipped.
  clipped = float(np.mean(np.abs(mono_N) > 1.0))
  samples_N = audio_io.resample(mono_N, rate, settings.sample_rate)

  sr = settings.sample_rate
  pcm_N = audio_io.to_pcm16(samples_N)
  chunks, silent = [], 0
  bounds = chunk_bounds_ms(
    _length_ms(len(pcm_N), sr), settings.chunk_length_ms, settings.overlap_ms
  )
  for index, (start_ms, end_ms) in enumerate(bounds):
    chunk_N = pcm_N[_ms_to_sample(start_ms, sr) : _ms_to_sample(end_ms, sr)]
    if is_silent(chunk_N, sr, settings.chunk_length_ms, settings.silence_thresh_db):
      silent += 1
      continue
    name = f'{stem}_{index:05d}.wav'
    audio_io.write_wav_atomic(os.path.join(output_dir, name), chunk_N, sr)
    chunks.append(name)
  # Chunks from an earlier run with other settings would otherwise linger as data.
  for name in set(old['chunks'] if old else ()) - set(chunks):
    try:
      os.remove(os.path.join(output_dir, name))
    except FileNotFoundError:
      pass
  with files.atomic_write(manifest_path) as f:
    json.dump({**source_id, 'chunks': chunks, 'silent': silent}, f, indent=1)
  reason = '' if bounds else 'shorter than one chunk'
  return Result(path, 'done', len(chunks), silent, reason, clipped)


def _prepare_safely(path: str, stem: str, output_dir: str, settings: Settings) -> Result:
  """``prepare_file`` that turns any error into a failed Result: inline as in workers.

  Symlink loops, dangling links, names that are not UTF-8 and the like cost their file,
  not the run, however many workers there are.
  """
  try:
    return prepare_file(path, stem, output_dir, settings)
  except OSError as e:
    if e.errno in _DISK_FULL:
      raise  # Not this file's fault: every next file would fail the same way.
    return Result(path, 'failed', reason=e.strerror or f'{type(e).__name__}: {e}')
  except Exception as e:  # pylint: disable=broad-except
    reason = e.strerror if isinstance(e, OSError) and e.strerror else f'{type(e).__name__}: {e}'
    return Result(path, 'failed', reason=reason)


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _device(path: str) -> str:
  """The mount point holding ``path``: what a person frees space on."""
  path = os.path.realpath(path)
  while not os.path.ismount(path):
    path = os.path.dirname(path)
  return path


def _disk_full(error: OSError, output_dir: str) -> OSError:
  """One line for the whole run, the device and the file (the command adds what to do)."""
  where = error.filename or output_dir
  return OSError(error.errno, f'no space left on {_device(output_dir)} writing {where}')


def _die_with_parent(parent_pid: int) -> None:
  """Worker initializer: end the moment the parent is gone (a kill -9 runs no cleanup).

  At once, not after a poll: a worker writing on for a moment would race the next run.
  """
  processes.tie_to_parent(parent_pid, signal.SIGKILL)


def find_sources(inputs: list[str]) -> list[str]:
  """Files named in ``inputs`` plus audio files found under its directories, sorted.

  Sub-directories holding samplernn-prepare output (a manifest folder) are skipped.
  """
  found = []
  for item in inputs:
    if os.path.isdir(item):
      # A folder holding another samplernn-prepare run's output has chunks, not sources.
      found += audio_io.find_audio(item, skip_dir=lambda root, dirs: MANIFEST_DIR in dirs)
    elif os.path.isfile(item):
      found.append(item)
    else:
      raise FileNotFoundError(f'--input: no such file or directory: {item}')
  return sorted(dict.fromkeys(os.path.normpath(p) for p in found))


def unique_stems(paths: list[str]) -> list[str]:
  """File stems, with a hash of the path appended where two sources share one."""
  stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  counts = {s: stems.count(s) for s in stems}
  return [
    s if counts[s] == 1 else f'{s}-{hashlib.sha1(os.path.abspath(p).encode()).hexdigest()[:8]}'
    for s, p in zip(stems, paths)
  ]


def prepare(
  inputs: list[str],
  output_dir: str,
  settings: Settings = Settings(),
  *,
  num_workers: int = 1,
  progress: bool = True,
) -> list[Result]:
  """Chunks every source under ``inputs`` into ``output_dir``; one Result per source."""
  settings.check()
  # Chunks of an earlier run are not sources, even with --output_dir inside --input.
  out = os.path.abspath(output_dir) + os.sep
  paths = [p for p in find_sources(inputs) if not os.path.abspath(p).startswith(out)]
  files.check_writable(output_dir, '--output_dir')
  os.makedirs(os.path.join(output_dir, MANIFEST_DIR), exist_ok=True)
  for directory in (output_dir, os.path.join(output_dir, MANIFEST_DIR)):
    files.remove_stale_temps(directory)  # Left by a killed run.
  jobs = list(zip(paths, unique_stems(paths)))
  bar = tqdm.tqdm(total=len(jobs), unit='file', disable=not progress)
  results = []
  if num_workers <= 1:
    for path, stem in jobs:
      try:
        results.append(_prepare_safely(path, stem, output_dir, settings))
      except OSError as e:  # Only a full disk gets here.
        bar.close()
        raise _disk_full(e, output_dir) from None
      bar.update()
  else:
    # spawn, not fork: the parent may hold JAX or other threads that fork breaks.
    context = multiprocessing.get_context('spawn')
    with concurrent.futures.ProcessPoolExecutor(
      num_workers, mp_context=context, initializer=_die_with_parent, initargs=(os.getpid(),)
    ) as pool:
      futures = {
        pool.submit(_prepare_safely, path, stem, output_dir, settings): path for path, stem in jobs
      }
      for future in concurrent.futures.as_completed(futures):
        try:
          results.append(future.result())
        except Exception as e:  # A crashed worker costs its file, not the run.
          if isinstance(e, OSError) and e.errno in _DISK_FULL:
            for other in futures:
              other.cancel()  # Files not started yet would fail alike.
            bar.close()
            raise _disk_full(e, output_dir) from None
          results.append(Result(futures[future], 'failed', reason=f'{type(e).__name__}: {e}'))
        bar.update()
  bar.close()
  return sorted(results, key=lambda r: r.path)


def summary(results: list[Result], output_dir: str) -> str:
  """The report printed at the end of a run."""
  done = [r for r in results if r.status == 'done']
  skipped = [r for r in results if r.status == 'skipped']
  failed = [r for r in results if r.status == 'failed']
  short = [r for r in done if r.reason]
  clipped = [r for r in done if r.clipped > 0]
  lines = [
    f'Files read: {len(done)} (plus {len(skipped)} finished earlier, skipped)',
    f'Chunks written: {sum(r.chunks_written for r in done)} to {output_dir}',
    f'Silent chunks dropped: {sum(r.chunks_silent for r in done)}',
    f'Files shorter than one chunk: {len(short)}',
    f'Files clipped (float samples beyond +-1, cut to full scale): {len(clipped)}',
  ]
  lines += [f'  {_printable(r.path)}: {100 * r.clipped:.2g}% of samples' for r in clipped]
  lines += [f'Files failed: {len(failed)}']
  lines += [f'  {_printable(r.path)}: {r.reason}' for r in failed]
  return '\n'.join(lines)


def _printable(path: str) -> str:
  # A name that is not UTF-8 holds surrogate escapes, which print() refuses.
  return path.encode('utf-8', 'backslashreplace').decode('utf-8')


def problem(results: list[Result]) -> str | None:
  """Why a run should exit non-zero (files failed, no chunk at all), or None."""
  if not results:
    return 'no audio files found in --input; name files or folders holding audio.'
  failed = [r for r in results if r.status == 'failed']
  if failed:
    return f'{len(failed)} of {len(results)} files failed (listed above).'
  if not sum(r.chunks_written for r in results):
    return (
      'no chunk was written: every file is shorter than one chunk or silent; lower '
      '--chunk_length_ms or --silence_thresh_db.'
    )
  return None
