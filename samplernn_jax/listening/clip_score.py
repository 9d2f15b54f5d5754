"""The curation score: how much a clip sounds like the training audio, higher is better.

A *profile* of reference audio (the training files, stored in the workdir when training
starts, or any folder of audio) holds, over segments of a few seconds, the mean and spread
of six groups of features computed with librosa and NumPy:

* ``timbre``: the log-mel spectrum's shape (band means less their average, so loudness
  does not count twice) and each band's spread over time;
* ``loudness``: the frame level in dBFS (mean, spread, 10th, 50th and 90th percentiles);
* ``flatness``: spectral flatness (log10; white noise is near 0, a tone far below);
* ``tonality``: whether spectral peaks persist from one window to the next (noise of any
  colour: no);
* ``periodicity``: how pitched frames are (autocorrelation peak at a 60-1000 Hz period);
* ``rhythm``: onset rate, the onset envelope's mean and peakiness, and how regularly it
  repeats (the autocorrelation peak between 0.1 and 2 s).

A clip's *closeness* in a group is 1 while its distance to the profile (RMS of z-scores,
spreads floored so a very uniform corpus does not blow small differences up) is within
what 90% of the reference segments show, and ``1 / (1 + excess)`` beyond, where excess
counts those typical distances: the slow fall keeps far clips (a half-trained model's)
apart. ``closeness`` is the weighted geometric mean over groups, so one group far off is
enough to sink a clip. *Penalties* are hard defects counted on the raw samples:
``silent`` (share of 20 ms frames under -60 dBFS), ``stuck`` (share of sounding frames
that are nearly all DC: a level the model got stuck at) and ``clipped`` (share of samples
at full scale); silence and clipping count only beyond what the reference itself has.
``score = closeness - penalty``, floored at -1 (unreadable files get -1).
``samplernn-score`` prints it for audio files.
"""

import dataclasses
import json
import os
from typing import Optional, Sequence

from absl import logging
import numpy as np

from samplernn_jax import audio_io
from samplernn_jax import files
from samplernn_jax import workdir as workdir_lib

# Reference audio is cut into segments of this length: about a phrase, and many per file.
SEGMENT_SECONDS = 4.0
# Enough segments for stable spreads; more only costs time at training start.
MAX_FILES = 128
MAX_SEGMENTS_PER_FILE = 4
N_MELS = 40
# Frames of the penalties, and the levels that define their defects.
_DEFECT_FRAME_SECONDS = 0.02
SILENT_DBFS = -60.0
# A sounding frame whose sample spread is under 5% of its RMS is DC: a stuck level.
_STUCK_STD_OVER_RMS = 0.05
_FULL_SCALE = 0.999
# What each defect share costs. Clipping is rare in mastered music and wrecks a clip even
# when 1% of samples hit full scale, so it costs most.
PENALTY_WEIGHTS = {'silent': 1.0, 'stuck': 2.0, 'clipped': 10.0}
GROUP_WEIGHTS = {
  'timbre': 0.25,
  'loudness': 0.15,
  'flatness': 0.15,
  'tonality': 0.15,
  'periodicity': 0.15,
  'rhythm': 0.15,
}
# The smallest spread each feature may have (dB; dB; log10; correlations; per s, dB,
# ratio, correlation).
_SPREAD_FLOORS = {
  'timbre': np.full(2 * N_MELS, 1.0),
  'loudness': np.full(5, 1.0),
  'flatness': np.full(4, 0.05),
  'tonality': np.full(3, 0.05),
  'periodicity': np.full(2, 0.05),
  'rhythm': np.array([0.25, 0.1, 0.05, 0.05]),
}
WORST_SCORE = -1.0
# Bumped whenever features change: a stored profile of another version is recomputed.
PROFILE_VERSION = 1
_EPS = 1e-10


# ---------------------------------------------------------------------------------------
# Features and defects of one stretch of audio
# ---------------------------------------------------------------------------------------


def _n_fft(sample_rate: int) -> int:
  """About 64 ms: 1024 at 16 kHz, 512 at 8 kHz."""
  return int(2 ** round(np.log2(0.064 * sample_rate)))


def features(audio_N: np.ndarray, sample_rate: int) -> dict:
  """The feature groups of float audio in [-1, 1]: ``{group: float64[dims]}``."""
  import librosa  # pylint: disable=g-import-not-at-top  (numba start-up only when scoring)

  n_fft = _n_fft(sample_rate)
  hop = n_fft // 4
  audio_N = np.asarray(audio_N, np.float32)
  if audio_N.shape[0] < n_fft:
    audio_N = np.pad(audio_N, (0, n_fft - audio_N.shape[0]))
  power_FxT = np.abs(librosa.stft(audio_N, n_fft=n_fft, hop_length=hop)) ** 2
  mel_db_MxT = 10 * np.log10(
    librosa.feature.melspectrogram(S=power_FxT, sr=sample_rate, n_mels=N_MELS) + _EPS
  )
  # Frame RMS from the spectrum (Parseval, Hann window): dBFS of a full-scale sine is -3.
  window_power = np.sum(np.hanning(n_fft + 1)[:-1] ** 2)
  rms_T = np.sqrt(np.maximum(2 * power_FxT[1:].sum(0) + power_FxT[0], 0) / (n_fft * window_power))
  level_db_T = 20 * np.log10(np.maximum(rms_T, 1e-5))
  sounding = level_db_T > SILENT_DBFS
  if not sounding.any():
    sounding[:] = True  # Silence: describe it as it is; the penalty does the rest.

  band_mean_M = mel_db_MxT[:, sounding].mean(1)
  timbre = np.concatenate([band_mean_M - band_mean_M.mean(), mel_db_MxT[:, sounding].std(1)])
  loudness = np.array(
    [level_db_T.mean(), level_db_T.std(), *np.percentile(level_db_T, [10, 50, 90])]
  )
  log_flat_T = np.log10(
    np.maximum(librosa.feature.spectral_flatness(S=np.sqrt(power_FxT[:, sounding])), _EPS)
  )[0]
  flatness = np.array([log_flat_T.mean(), log_flat_T.std(), *np.percentile(log_flat_T, [10, 90])])
  tonality = _tonality(power_FxT, sounding, n_fft // hop)
  periodicity = _periodicity(audio_N, sample_rate, n_fft)

  onset_env_T = librosa.onset.onset_strength(S=mel_db_MxT, sr=sample_rate, hop_length=hop)
  seconds = audio_N.shape[0] / sample_rate
  onsets = (
    librosa.onset.onset_detect(onset_envelope=onset_env_T, sr=sample_rate, hop_length=hop)
    if onset_env_T.max() > 0
    else []
  )
  env_mean = float(onset_env_T.mean())
  rhythm = np.array(
    [
      len(onsets) / seconds,
      env_mean,
      float(onset_env_T.std()) / max(env_mean, 1e-3),
      _regularity(onset_env_T, sample_rate / hop),
    ]
  )
  return {
    'timbre': timbre,
    'loudness': loudness,
    'flatness': flatness,
    'tonality': tonality,
    'periodicity': periodicity,
    'rhythm': rhythm,
  }


def _tonality(power_FxT: np.ndarray, sounding_T: np.ndarray, lag: int) -> np.ndarray:
  """How much a frame's fine spectral structure (peaks over the envelope) persists.

  The correlation of detrended log spectra ``lag`` frames (one window) apart: partials
  that ring give high values, noise of any colour about 0, whatever its flatness.
  Returns [mean, 10th and 90th percentiles] over pairs of sounding frames.
  """
  from scipy import ndimage  # pylint: disable=g-import-not-at-top  (comes with librosa)

  log_FxT = np.log10(power_FxT + _EPS)
  fine_FxT = log_FxT - ndimage.uniform_filter1d(log_FxT, 9, axis=0, mode='nearest')
  pairs = sounding_T[:-lag] & sounding_T[lag:] if sounding_T.shape[0] > lag else []
  if not np.any(pairs):
    return np.zeros(3)
  a, b = fine_FxT[:, :-lag][:, pairs], fine_FxT[:, lag:][:, pairs]
  corr = (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0) + _EPS)
  return np.array([corr.mean(), *np.percentile(corr, [10, 90])])


def _periodicity(audio_N: np.ndarray, sample_rate: int, frame: int) -> np.ndarray:
  """How pitched the sound is: [median, 90th percentile] over sounding frames.

  Per frame, the highest normalized autocorrelation of the first difference at lags of
  a 60 to 1000 Hz period. Differencing whitens low-passed noise, which would otherwise
  look periodic at short lags; a half-trained model's wobbly pitch already scores here.
  """
  audio_N = audio_N.astype(np.float64)
  if audio_N.shape[0] < frame + 1:
    return np.zeros(2)
  hop = frame // 2
  frames_TxF = np.lib.stride_tricks.sliding_window_view(audio_N, frame + 1)[::hop]
  sounding = np.sqrt(np.mean(frames_TxF**2, axis=1)) > 10 ** (SILENT_DBFS / 20)
  diff_TxF = np.diff(frames_TxF[sounding], axis=1)
  diff_TxF -= diff_TxF.mean(1, keepdims=True)
  lo, hi = max(1, sample_rate // 1000), min(frame // 2, sample_rate // 60)
  if not sounding.any() or hi <= lo:
    return np.zeros(2)
  ac_TxL = np.fft.irfft(np.abs(np.fft.rfft(diff_TxF, 2 * frame, axis=1)) ** 2, axis=1)
  peak_T = ac_TxL[:, lo : hi + 1].max(1) / np.maximum(ac_TxL[:, 0], _EPS)
  return np.array([np.median(peak_T), np.percentile(peak_T, 90)])


def _regularity(onset_env_T: np.ndarray, frames_per_second: float) -> float:
  """Highest normalized autocorrelation of the onset envelope at lags of 0.1 to 2 s."""
  x = onset_env_T - onset_env_T.mean()
  lo = max(1, int(0.1 * frames_per_second))
  hi = min(int(2.0 * frames_per_second), x.shape[0] // 2)
  energy = float(np.dot(x, x))
  if hi <= lo or energy <= 0:
    return 0.0
  return float(max(np.dot(x[:-lag], x[lag:]) for lag in range(lo, hi + 1)) / energy)


def defects(audio_N: np.ndarray, sample_rate: int) -> dict:
  """Shares in [0, 1]: ``silent`` and ``stuck`` frames, ``clipped`` samples."""
  audio_N = np.asarray(audio_N, np.float64)
  if audio_N.shape[0] == 0:
    audio_N = np.zeros(1)  # No sound at all is silence.
  frame = max(1, min(audio_N.shape[0], int(_DEFECT_FRAME_SECONDS * sample_rate)))
  n = max(1, audio_N.shape[0] // frame)
  frames_NxF = audio_N[: n * frame].reshape(n, frame)
  rms = np.sqrt(np.mean(frames_NxF**2, axis=1))
  sounding = rms > 10 ** (SILENT_DBFS / 20)
  stuck = sounding & (frames_NxF.std(axis=1) < _STUCK_STD_OVER_RMS * rms)
  return {
    'silent': float(np.mean(~sounding)),
    'stuck': float(np.mean(stuck)),
    'clipped': float(np.mean(np.abs(audio_N) >= _FULL_SCALE)),
  }


# ---------------------------------------------------------------------------------------
# The profile
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Profile:
  """Statistics of reference audio; JSON in ``WORKDIR/clip_profile.json``."""

  sample_rate: int
  mean: dict  # group -> list of feature means
  spread: dict  # group -> list of spreads (floored standard deviations)
  typical_distance: dict  # group -> 90th percentile of the reference segments' distances
  allowed: dict  # defect -> 95th percentile share in the reference (silent, clipped)
  num_segments: int
  source: str = ''  # Where the reference audio came from.
  # A few reference files, relative to ``source``: the gallery plays them (``example_paths``).
  examples: list = dataclasses.field(default_factory=list)
  version: int = PROFILE_VERSION

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: dict) -> 'Profile':
    return cls(**d)


def segments(
  audio_N: np.ndarray, sample_rate: int, max_segments: int = MAX_SEGMENTS_PER_FILE
) -> list:
  """Up to ``max_segments`` consecutive pieces of SEGMENT_SECONDS; a shorter file is one."""
  size = int(SEGMENT_SECONDS * sample_rate)
  if audio_N.shape[0] < 2 * size:
    return [audio_N]
  return [
    audio_N[k * size : (k + 1) * size] for k in range(min(max_segments, audio_N.shape[0] // size))
  ]


def _distance(group: str, values, profile: Profile) -> float:
  z = (np.asarray(values) - np.asarray(profile.mean[group])) / np.asarray(profile.spread[group])
  return float(np.sqrt(np.mean(z**2)))


def make_profile(
  paths: Sequence[str], sample_rate: Optional[int] = None, source: str = ''
) -> Profile:
  """The profile of up to MAX_FILES of ``paths`` (evenly picked), read at ``sample_rate``.

  ``sample_rate=None`` takes the first file's rate. Unreadable files are skipped; raises
  ValueError when none is readable.
  """
  paths = sorted(paths)
  if len(paths) > MAX_FILES:
    paths = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, MAX_FILES)]
  rows = {g: [] for g in GROUP_WEIGHTS}
  shares = {'silent': [], 'clipped': []}
  used = []
  for path in paths:
    try:
      samples_NxC, rate = audio_io.read_audio(path)
    except (audio_io.AudioError, OSError):
      continue
    mono_N = audio_io.to_mono(samples_NxC)
    sample_rate = sample_rate or rate
    mono_N = audio_io.resample(mono_N, rate, sample_rate)
    used.append(path)
    for piece_N in segments(mono_N, sample_rate):
      for g, v in features(piece_N, sample_rate).items():
        rows[g].append(v)
      d = defects(piece_N, sample_rate)
      for k in shares:
        shares[k].append(d[k])
  if not used:
    raise ValueError(f'{source or "reference"}: no readable audio among {len(paths)} files.')
  mean = {g: np.mean(r, axis=0) for g, r in rows.items()}
  spread = {g: np.maximum(np.std(r, axis=0), _SPREAD_FLOORS[g]) for g, r in rows.items()}
  profile = Profile(
    sample_rate=int(sample_rate),
    mean={g: m.tolist() for g, m in mean.items()},
    spread={g: s.tolist() for g, s in spread.items()},
    typical_distance={},
    allowed={k: float(np.percentile(v, 95)) for k, v in shares.items()},
    num_segments=len(rows['timbre']),
    source=source,
    examples=_examples(used, source),
  )
  # Closeness 1 means "as close as nine reference segments out of ten": never below the
  # spread itself, so a tiny reference does not make every clip look far.
  profile.typical_distance = {
    g: max(1.0, float(np.percentile([_distance(g, r, profile) for r in rows[g]], 90))) for g in rows
  }
  return profile


def _examples(used: list, source: str) -> list:
  """Four of ``used`` spread over it, relative to ``source``, if that is their folder."""
  if not os.path.isdir(source):
    return []  # A label, not a folder: nothing the gallery could check a path against.
  source = os.path.abspath(source)
  picked = [os.path.abspath(p) for p in used[:: max(1, len(used) // 4)][:4]]
  return [os.path.relpath(p, source) for p in picked if _inside(p, source)]


def profile_path(workdir: str) -> str:
  return os.path.join(workdir, workdir_lib.CLIP_PROFILE)


def save_profile(workdir: str, profile: Profile) -> None:
  os.makedirs(workdir, exist_ok=True)
  with files.atomic_write(profile_path(workdir)) as f:  # Two tune workers may write at once.
    json.dump(profile.to_json(), f)


def load_profile(workdir: str) -> Optional[Profile]:
  """The workdir's stored profile, or None if it has none of this PROFILE_VERSION.

  The profile is derived data in a folder people share: a damaged or odd one is never an
  error, it is ignored with a warning naming the file (training computes it again).
  """
  path = profile_path(workdir)
  try:
    with open(path, encoding='utf-8') as f:
      stored = json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    logging.warning('%s: unreadable (%s); clips are scored without it until it is remade.', path, e)
    return None
  if isinstance(stored, dict) and stored.get('version') != PROFILE_VERSION:
    return None  # Another version's: recomputed, as features changed.
  problem = _profile_problem(stored) if isinstance(stored, dict) else 'not a JSON object'
  if problem:
    logging.warning('%s: damaged (%s); clips are scored without it until remade.', path, problem)
    return None
  return Profile.from_json(stored)


def _numbers(values, size: int) -> bool:
  return (
    isinstance(values, list)
    and len(values) == size
    and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
  )


def _profile_problem(stored: dict) -> Optional[str]:
  """What is wrong with a stored profile's fields, or None: scoring must not crash on it."""
  fields = {f.name for f in dataclasses.fields(Profile)}
  if set(stored) != fields:
    return f'fields {sorted(set(stored) ^ fields)} missing or unknown'
  if not isinstance(stored['sample_rate'], int) or stored['sample_rate'] <= 0:
    return 'no positive integer sample_rate'
  tables = [stored[k] for k in ('mean', 'spread', 'typical_distance', 'allowed')]
  if not all(isinstance(t, dict) for t in tables):
    return 'mean, spread, typical_distance and allowed must be objects'
  mean, spread, distance, allowed = tables
  for group, floor in _SPREAD_FLOORS.items():
    size = floor.shape[0]
    if not (_numbers(mean.get(group), size) and _numbers(spread.get(group), size)):
      return f'mean or spread of {group!r} is not {size} numbers'
    if min(spread[group]) <= 0 or not _numbers([distance.get(group)], 1) or distance[group] <= 0:
      return f'spread or typical_distance of {group!r} not positive'
  if not all(_numbers([allowed.get(k)], 1) for k in ('silent', 'clipped')):
    return 'allowed is not shares of silent and clipped'
  if not isinstance(stored['source'], str) or not isinstance(stored['examples'], list):
    return 'source or examples of the wrong type'
  return None


def _inside(path: str, folder: str) -> bool:
  return os.path.commonpath([path, folder]) == folder


def example_paths(profile: Profile) -> list:
  """The profile's example files that are safe to copy onto a page people share.

  A profile is read from a workdir, untrusted: an example counts only when it names, relative
  to ``source``, a file that resolves (links followed) inside ``source`` and has an audio
  suffix. The caller still decodes it before using it (``audio_io``), so nothing but audio
  leaves the data folder. Refused examples get one warning.
  """
  if not profile.source or not os.path.isdir(profile.source):
    return []
  source = os.path.realpath(profile.source)
  safe, refused = [], []
  for example in profile.examples:
    # An absolute path (profiles before examples were relative) passes the same check.
    path = os.path.realpath(os.path.join(source, example)) if isinstance(example, str) else None
    if (
      path
      and _inside(path, source)
      and path.lower().endswith(audio_io.AUDIO_EXTENSIONS)
      and os.path.isfile(path)
    ):
      safe.append(path)
    else:
      refused.append(repr(example))
  if refused:
    logging.warning(
      'clip_profile.json: ignored examples %s: each must be an audio file inside %s, named '
      'relative to it.',
      ', '.join(refused),
      source,
    )
  return safe


def store_training_profile(workdir: str, data_dir: str, config) -> Profile:
  """At training start: the profile of the run's training files, unless already stored.

  The validation files stay out, so they can check the score as held-out audio.
  """
  from samplernn_jax import input_pipeline  # pylint: disable=g-import-not-at-top  (grain)

  source = os.path.abspath(data_dir)
  profile = load_profile(workdir)
  rate = int(config.data.sample_rate)
  if profile is not None and profile.source == source and profile.sample_rate == rate:
    return profile
  found = input_pipeline.find_audio_files(data_dir)
  train_files, _ = input_pipeline.split_files(found, float(config.data.val_frac))
  profile = make_profile(train_files, rate, source)
  save_profile(workdir, profile)
  return profile


def _is_workdir(path: str) -> bool:
  return any(
    os.path.exists(os.path.join(path, n))
    for n in (workdir_lib.CLIP_PROFILE, workdir_lib.CHECKPOINTS, workdir_lib.CONFIG)
  )


def reference_profile(reference: str) -> Profile:
  """The profile a workdir stores, else the profile of a folder of audio.

  A workdir without a stored profile (trained before profiles existed) falls back to its
  demo corpus if it has one. Raises FileNotFoundError / ValueError saying what to pass.
  """
  if not os.path.isdir(reference):
    raise FileNotFoundError(
      f'--reference={reference}: not a directory; pass a workdir or a folder of training audio.'
    )
  if _is_workdir(reference):
    profile = load_profile(reference)
    if profile is not None:
      return profile
    demo = os.path.join(reference, workdir_lib.DEMO_CORPUS)
    if not os.path.isdir(demo):
      raise ValueError(
        f'{reference}: this workdir stores no {workdir_lib.CLIP_PROFILE}; pass the folder '
        'of its training audio as --reference instead.'
      )
    reference = demo
  found = audio_files([reference])
  if not found:
    raise ValueError(f'--reference={reference}: holds no audio files.')
  return make_profile(found, source=os.path.abspath(reference))


# ---------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------


def score_audio(audio_N: np.ndarray, sample_rate: int, profile: Optional[Profile]) -> dict:
  """The score of float audio in [-1, 1] and its parts; higher is better.

  Keys: ``score``, ``closeness``, one closeness per feature group, ``silent``, ``stuck``,
  ``clipped`` (shares), ``penalty``, ``duration`` (s). Without a profile only the
  penalties count (``closeness`` is then 1 and the group parts absent).
  """
  audio_N = np.asarray(audio_N, np.float32)
  parts = {'duration': audio_N.shape[0] / sample_rate}
  d = defects(audio_N, sample_rate)
  allowed = profile.allowed if profile else {}
  penalty = sum(w * max(0.0, d[k] - allowed.get(k, 0.0)) for k, w in PENALTY_WEIGHTS.items())
  closeness = 1.0
  if profile is not None:
    audio_N = audio_io.resample(audio_N, sample_rate, profile.sample_rate)
    log_closeness = 0.0
    for g, v in features(audio_N, profile.sample_rate).items():
      excess = max(0.0, _distance(g, v, profile) / profile.typical_distance[g] - 1.0)
      parts[g] = 1.0 / (1.0 + excess)
      log_closeness += GROUP_WEIGHTS[g] * np.log(parts[g])
    closeness = float(np.exp(log_closeness))
  parts.update(d, closeness=closeness, penalty=penalty, score=max(WORST_SCORE, closeness - penalty))
  return parts


def score_file(path: str, profile: Optional[Profile]) -> dict:
  """``{'path', 'score', ...parts}``; an unreadable file gets WORST_SCORE and ``error``."""
  try:
    samples_NxC, rate = audio_io.read_audio(path)
  except (audio_io.AudioError, OSError) as e:
    reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    return {'path': path, 'score': WORST_SCORE, 'error': reason}
  return {'path': path, **score_audio(audio_io.to_mono(samples_NxC), rate, profile)}


def score_paths(paths: Sequence[str], reference: str) -> list[dict]:
  """One dict per path (same order): ``path``, ``score`` (float, higher is better), parts.

  ``reference`` is a workdir (its stored profile) or a folder of audio (profiled on the
  spot). A path that is not readable audio gets ``score = -1`` and an ``error`` reason.
  """
  profile = reference_profile(reference)
  return [score_file(p, profile) for p in paths]


def audio_files(inputs: Sequence[str]) -> list:
  """Files given, and the audio files under directories given (sorted, dot-names skipped)."""
  out = []
  for item in inputs:
    out += audio_io.find_audio(item) if os.path.isdir(item) else [item]
  return out
