"""Reading, resampling and writing audio files: the one place that touches codecs.

* ``read_audio(path)`` decodes any file that libsndfile (through soundfile) or
  FFmpeg's libraries (through PyAV, no ``ffmpeg`` binary needed) can read: wav, flac,
  ogg/vorbis, opus, mp3, m4a/aac, webm, and the audio track of video files.
  soundfile is tried first because it is exact and fast for the formats it knows.
* ``to_mono`` averages channels; ``resample`` uses soxr at high quality ('HQ').
* ``write_wav_atomic`` writes 16-bit PCM through ``files.atomic_write``, so an interrupted
  run never leaves a half-written chunk under its final name.

Every failure to produce usable samples raises ``AudioError`` with a reason a person
can act on (empty, truncated, not audio, non-finite samples, ...).
"""

import io
import os
import re

import av
import numpy as np
import soundfile as sf
import soxr

from samplernn_jax import files

# What samplernn-prepare looks for in a directory; PyAV reads all of them.
AUDIO_EXTENSIONS = (
  '.wav',
  '.flac',
  '.ogg',
  '.oga',
  '.opus',
  '.mp3',
  '.m4a',
  '.aac',
  '.mp4',
  '.webm',
  '.mka',
  '.aif',
  '.aiff',
  '.wma',
)
# Of those, what libsndfile reads directly: what training reads (others go through
# samplernn-prepare first).
SOUNDFILE_EXTENSIONS = ('.wav', '.flac', '.ogg', '.aif', '.aiff')


def find_audio(directory: str, extensions=AUDIO_EXTENSIONS, skip_dir=None) -> list:
  """Sorted paths of the files under ``directory`` ending in ``extensions`` (any case).

  Recursive; names starting with '.' (files and folders) are skipped, and so is every folder
  for which ``skip_dir(root, subfolders)`` is true (with what is below it).
  """
  found = []
  for root, dirs, names in os.walk(directory):
    if root != directory and skip_dir is not None and skip_dir(root, dirs):
      dirs[:] = []
      continue
    dirs[:] = [d for d in dirs if not d.startswith('.')]
    found += [
      os.path.join(root, n)
      for n in names
      if n.lower().endswith(extensions) and not n.startswith('.')
    ]
  return sorted(found)


RESAMPLE_QUALITY = 'HQ'
# libsndfile notes a WAV whose header promises more data than the file holds as
# "data : 32000 (should be 15978)" and then silently reads the shorter file.
_TRUNCATED_RE = re.compile(r'data\s*:\s*(\d+)\s*\(should be (\d+)\)')


class AudioError(Exception):
  """A file that cannot be turned into finite samples; str() is the reason."""


def read_audio(path: str) -> tuple[np.ndarray, int]:
  """Decodes ``path`` to (float32[num_samples, num_channels] in [-1, 1], sample_rate).

  Raises AudioError for an empty, truncated, corrupt or non-audio file, one with no
  samples, or one holding NaN or inf.
  """
  if os.path.getsize(path) == 0:
    raise AudioError('empty file (0 bytes)')
  try:
    samples_NxC, sample_rate = _read_soundfile(path)
  except sf.LibsndfileError as sf_error:
    try:
      samples_NxC, sample_rate = _read_pyav(path)
    except (av.FFmpegError, ValueError) as av_error:
      raise AudioError(
        f'not readable audio (soundfile: {sf_error}; PyAV: {av_error})'
      ) from av_error
  if samples_NxC.shape[0] == 0:
    raise AudioError('no audio samples')
  if not np.all(np.isfinite(samples_NxC)):
    raise AudioError('holds non-finite samples (NaN or inf)')
  return samples_NxC, sample_rate


def _read_soundfile(path: str) -> tuple[np.ndarray, int]:
  with sf.SoundFile(path) as f:
    match = _TRUNCATED_RE.search(f.extra_info)
    if match and int(match.group(2)) < int(match.group(1)):
      raise AudioError(
        f'truncated: header declares {match.group(1)} data bytes, the file holds {match.group(2)}'
      )
    try:
      return f.read(dtype='float32', always_2d=True), f.samplerate
    except sf.LibsndfileError as e:
      # Opened but failed mid-stream: corrupt, not another format.
      raise AudioError(f'corrupt or truncated: {e}') from e


def probe(path: str) -> tuple[int, int]:
  """(frames, sample_rate) from the header, checked against the file; raises AudioError.

  Fast: only the header is read, except for float files, the only kind that can hold
  NaN or inf, whose samples are scanned block by block.
  """
  if os.path.getsize(path) == 0:
    raise AudioError('empty file (0 bytes)')
  try:
    with sf.SoundFile(path) as f:
      match = _TRUNCATED_RE.search(f.extra_info)
      if match and int(match.group(2)) < int(match.group(1)):
        raise AudioError(
          f'truncated: header declares {match.group(1)} data bytes, the file holds {match.group(2)}'
        )
      if f.frames <= 0:
        raise AudioError('no audio samples')
      if f.subtype in ('FLOAT', 'DOUBLE'):
        for block in f.blocks(blocksize=1 << 16, dtype='float32'):
          if not np.all(np.isfinite(block)):
            raise AudioError('holds non-finite samples (NaN or inf)')
      return f.frames, f.samplerate
  except sf.LibsndfileError as e:
    raise AudioError(f'not readable audio ({e})') from None


def _read_pyav(path: str) -> tuple[np.ndarray, int]:
  with av.open(path) as container:
    if not container.streams.audio:
      raise ValueError('no audio stream')
    stream = container.streams.audio[0]
    # Planar float keeps each channel in its own row whatever the codec's layout.
    resampler = av.AudioResampler(format='fltp')
    blocks_CxN = []
    try:
      for frame in container.decode(stream):
        blocks_CxN.extend(f.to_ndarray() for f in resampler.resample(frame))
      blocks_CxN.extend(f.to_ndarray() for f in resampler.resample(None))
    except av.FFmpegError as e:
      raise AudioError(f'corrupt or truncated: {e}') from e
    sample_rate = stream.rate or stream.codec_context.sample_rate
  if not blocks_CxN:
    return np.zeros((0, 1), np.float32), sample_rate
  if len({b.shape[0] for b in blocks_CxN}) > 1:
    raise AudioError('channel count changes mid-stream')
  return np.concatenate(blocks_CxN, axis=1).T.astype(np.float32), sample_rate


def to_mono(samples_NxC: np.ndarray) -> np.ndarray:
  """Averages channels: float32[N, C] -> float32[N] (PRiSM's librosa mono=True)."""
  return samples_NxC.mean(axis=1, dtype=np.float32)


def resample(samples_N: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
  """soxr-resamples mono float samples; returns ``resampled_length`` samples."""
  if rate_in == rate_out:
    return samples_N
  return soxr.resample(samples_N, rate_in, rate_out, RESAMPLE_QUALITY).astype(np.float32)


def resampled_length(num_samples: int, rate_in: int, rate_out: int) -> int:
  """How many samples ``resample`` returns: soxr rounds num_samples * out/in half up."""
  return (2 * num_samples * rate_out + rate_in) // (2 * rate_in)


def read_mono(path: str, sample_rate: int) -> np.ndarray:
  """Decodes, mixes to mono and resamples to ``sample_rate``: float32[N]."""
  samples_NxC, rate = read_audio(path)
  return resample(to_mono(samples_NxC), rate, sample_rate)


def to_pcm16(samples_N: np.ndarray) -> np.ndarray:
  """Float [-1, 1] -> int16, clipping overshoot (resampling can ring past 1.0)."""
  return np.clip(np.round(samples_N * 32768.0), -32768, 32767).astype(np.int16)


def write_wav_atomic(path: str, samples_N: np.ndarray, sample_rate: int) -> None:
  """Writes float (or int16) samples as a 16-bit PCM WAV at ``path``, all or nothing.

  Raises OSError naming the file (a read-only folder, a full disk), not libsndfile's
  "System error".
  """
  pcm_N = samples_N if samples_N.dtype == np.int16 else to_pcm16(samples_N)
  # Encoded in memory, then written by Python: libsndfile writing into a Python file turns a
  # full disk into a bare AssertionError and a traceback per failed write (a cffi callback).
  encoded = io.BytesIO()
  sf.write(encoded, pcm_N, sample_rate, subtype='PCM_16', format='WAV')
  try:
    with files.atomic_write(path, 'wb') as f:
      f.write(encoded.getbuffer())
  except OSError as e:
    raise OSError(e.errno, e.strerror, path) from None
