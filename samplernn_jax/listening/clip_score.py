"""The curation score: how much a clip sounds like the training audio, higher is better.

A *profile* of reference audio (the training files, stored in the workdir when training
starts, or any folder of audio) holds, over segments of a few seconds, the mean and spread
of five groups of features computed with librosa and NumPy on the audio less its DC (a
20 Hz high-pass), the spectrum looked at 40 dB deep under each frame's peak (a model's
noise floor under its notes does not count):

* ``timbre``: the log-mel spectrum's shape (band means less their average, so loudness
  does not count twice) and each band's spread over time;
* ``loudness``: the frame level in dBFS (mean, spread, 10th, 50th and 90th percentiles);
* ``flatness``: spectral flatness (log10; white noise is near 0, a tone far below);
* ``periodicity``: how pitched frames are (autocorrelation peak at a 60-1000 Hz period,
  past the first zero, so noise of any colour is not pitched);
* ``rhythm``: onset rate, the onset envelope's mean and peakiness, and how regularly it
  repeats (the autocorrelation peak between 0.1 and 2 s).

A clip's *closeness* in a group is 1 while its distance to the profile (RMS of z-scores,
spreads floored) is within what 90% of the reference segments show; beyond, with the
excess counted in those typical distances, it is ``1 / (1 + (excess / noise)^2)``, where
``noise`` is the excess of white or brown noise at the reference's level (at least 1): a
clip as far as noise gets 1/2. The reference's own spread says what is typical, noise says
what is far: a synthetic corpus varies so little that a model's first clear notes are
dozens of spreads away, yet much nearer than noise. ``closeness`` is the weighted
geometric mean over groups, so one group far off is enough to sink a clip.

*Penalties* are hard defects counted on the raw samples: ``silent`` (share of 20 ms
frames under -60 dBFS), ``stuck`` (share of sounding frames that are nearly all DC),
``clipped`` (share of samples at full scale), ``dc`` (share of the power below 20 Hz: an
offset or a drift, which costs only past half the power: unheard, it matters only when the
clip's sound is fainter than it) and ``steady`` (how far the clip's spectral change falls
short of the steadiest reference segments', squared: a steady tone, a buzz, a loop stuck on a
short pattern); silence, clipping and DC count only beyond what the reference itself has.
``score = closeness - penalty``, floored at -1 (unreadable files get -1).
``samplernn-score`` prints it for audio files. docs/listening.md gives the measurements
on real model output (scripts/make_curation_set.py) that chose these.
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
# when 1% of samples hit full scale, so it costs most. A clip mostly DC or drift costs as a
# stuck level does: both are a model holding a level instead of making sound.
PENALTY_WEIGHTS = {'silent': 1.0, 'stuck': 2.0, 'clipped': 10.0, 'dc': 2.0, 'steady': 1.0}
# DC costs only the share of power past this, scaled to cost in full when it is all DC.
# Below 20 Hz nothing is heard: a drift under a louder sound leaves the clip as it sounds
# (a late soundtrack checkpoint's clips drift with 30-40% of their power while playing 5 dB
# louder than its music; a DAW's high-pass removes it), while one over a faint sound is
# the failure (the model holding a level, its sound 20 dB or more under the offset).
DC_UNHEARD_SHARE = 0.5
# Below this, a wave is offset or drift, not sound: a model stuck near a level drifts.
HIGH_PASS_HZ = 20.0
# How far under each frame's loudest bin the spectrum is looked at (see _within_range).
DYNAMIC_RANGE_DB = 40.0
# Without a profile, a clip changing less than this is steady: a soundtrack's 4 s segments
# change 2.0 to 4.1 dB (5th to 95th percentile), brown noise 2.0, white 1.8, a sine 0.03.
DEFAULT_LEAST_CHANGE_DB = 2.0
# Lags at which a clip is compared with itself for ``steady``: a loop of 30 ms to 1 s.
_LOOP_SECONDS = (0.03, 1.0)
GROUP_WEIGHTS = {
  'timbre': 0.25,
  'loudness': 0.15,
  'flatness': 0.2,
  'periodicity': 0.2,
  'rhythm': 0.2,
}
# The smallest spread each feature may have (dB; dB; log10; correlations; per s, dB,
# ratio, correlation).
_SPREAD_FLOORS = {
  'timbre': np.full(2 * N_MELS, 1.0),
  'loudness': np.full(5, 1.0),
  'flatness': np.full(4, 0.05),
  'periodicity': np.full(2, 0.05),
  'rhythm': np.array([0.25, 0.1, 0.05, 0.05]),
}
WORST_SCORE = -1.0
# Bumped whenever features change: a stored profile of another version is recomputed.
PROFILE_VERSION = 3
# How a clip is scored from its audio and a profile; the gallery's cached scores carry it,
# so a new rule rescores old clips. 2: DC costs only past DC_UNHEARD_SHARE.
SCORE_VERSION = 2
_EPS = 1e-10


# ---------------------------------------------------------------------------------------
# Features and defects of one stretch of audio
# ---------------------------------------------------------------------------------------


def _n_fft(sample_rate: int) -> int:
  """About 64 ms: 1024 at 16 kHz, 512 at 8 kHz."""
  return int(2 ** round(np.log2(0.064 * sample_rate)))


def high_pass(audio_N: np.ndarray, sample_rate: int) -> np.ndarray:
  """The audio less its DC and drift below HIGH_PASS_HZ (zero phase), float64."""
  from scipy import signal  # pylint: disable=g-import-not-at-top  (comes with librosa)

  audio_N = np.asarray(audio_N, np.float64)
  if audio_N.shape[0] < 64:
    return audio_N - audio_N.mean()
  sos = signal.butter(2, HIGH_PASS_HZ, 'highpass', fs=sample_rate, output='sos')
  return signal.sosfiltfilt(sos, audio_N, padlen=min(audio_N.shape[0] - 1, 3 * 6))


def _within_range(power_FxT: np.ndarray) -> np.ndarray:
  """Power floored at DYNAMIC_RANGE_DB below each frame's peak bin.

  A model's noise floor sits 30 to 50 dB under its notes; unfloored, that hiss rules the
  spectral shape and flatness of any generated clip, however clear its pitch.
  """
  return np.maximum(power_FxT, power_FxT.max(0, keepdims=True) * 10 ** (-DYNAMIC_RANGE_DB / 10))


def features(audio_N, sample_rate: int) -> dict:
  """The feature groups of float audio in [-1, 1]: ``{group: float64[dims]}``.

  Measured on the audio less its DC (``high_pass``): an offset is a defect of its own
  (``defects``), not a loudness.
  """
  import librosa  # pylint: disable=g-import-not-at-top  (numba start-up only when scoring)

  n_fft = _n_fft(sample_rate)
  hop = n_fft // 4
  audio_N = high_pass(audio_N, sample_rate).astype(np.float32)
  if audio_N.shape[0] < n_fft:
    audio_N = np.pad(audio_N, (0, n_fft - audio_N.shape[0]))
  power_FxT = np.abs(librosa.stft(audio_N, n_fft=n_fft, hop_length=hop)) ** 2
  # Frame RMS from the spectrum (Parseval, Hann window): dBFS of a full-scale sine is -3.
  window_power = np.sum(np.hanning(n_fft + 1)[:-1] ** 2)
  rms_T = np.sqrt(np.maximum(2 * power_FxT[1:].sum(0) + power_FxT[0], 0) / (n_fft * window_power))
  level_db_T = 20 * np.log10(np.maximum(rms_T, 1e-5))
  sounding = level_db_T > SILENT_DBFS
  if not sounding.any():
    sounding[:] = True  # Silence: describe it as it is; the penalty does the rest.
  power_FxT = _within_range(power_FxT + _EPS)
  mel_db_MxT = 10 * np.log10(
    librosa.feature.melspectrogram(S=power_FxT, sr=sample_rate, n_mels=N_MELS) + _EPS
  )

  band_mean_M = mel_db_MxT[:, sounding].mean(1)
  timbre = np.concatenate([band_mean_M - band_mean_M.mean(), mel_db_MxT[:, sounding].std(1)])
  loudness = np.array(
    [level_db_T.mean(), level_db_T.std(), *np.percentile(level_db_T, [10, 50, 90])]
  )
  log_flat_T = np.log10(
    np.maximum(librosa.feature.spectral_flatness(S=np.sqrt(power_FxT[:, sounding])), _EPS)
  )[0]
  flatness = np.array([log_flat_T.mean(), log_flat_T.std(), *np.percentile(log_flat_T, [10, 90])])
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
    'periodicity': periodicity,
    'rhythm': rhythm,
  }


def _periodicity(audio_N: np.ndarray, sample_rate: int, frame: int) -> np.ndarray:
  """How pitched the sound is: [median, 90th percentile] over sounding frames.

  Per frame, the highest normalized autocorrelation at lags of a 60 to 1000 Hz period,
  looked for only past the autocorrelation's first zero: noise of any colour (brown noise
  correlates highly at short lags, but only falling) gives about 0, a wobbly model pitch
  over a noise floor 0.5 to 0.7, a clean note near 1.
  """
  audio_N = np.asarray(audio_N, np.float64)
  lo, hi = max(1, sample_rate // 1000), min(frame // 2 - 1, sample_rate // 60)
  if audio_N.shape[0] < frame or hi <= lo:
    return np.zeros(2)
  frames_TxF = np.lib.stride_tricks.sliding_window_view(audio_N, frame)[:: frame // 2]
  frames_TxF = frames_TxF[np.sqrt(np.mean(frames_TxF**2, axis=1)) > 10 ** (SILENT_DBFS / 20)]
  if not frames_TxF.shape[0]:
    return np.zeros(2)
  frames_TxF = (frames_TxF - frames_TxF.mean(1, keepdims=True)) * np.hanning(frame)
  ac_TxL = np.fft.irfft(np.abs(np.fft.rfft(frames_TxF, 2 * frame, axis=1)) ** 2, axis=1)
  ac_TxL = ac_TxL[:, : hi + 1] / np.maximum(ac_TxL[:, :1], _EPS)
  lag_L = np.arange(hi + 1)
  # Lags from the first negative value on (none: the frame is noise, its peak 0).
  first_negative_T = np.where((ac_TxL < 0).any(1), (ac_TxL < 0).argmax(1), hi + 1)
  past_zero_TxL = (lag_L >= first_negative_T[:, None]) & (lag_L >= lo)
  peak_T = np.where(past_zero_TxL, ac_TxL, 0.0).max(1)
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
  """Shares in [0, 1]: ``silent`` and ``stuck`` frames, ``clipped`` samples, ``dc`` power.

  ``dc`` is the share of the clip's power below HIGH_PASS_HZ: an offset or a slow drift.
  """
  audio_N = np.asarray(audio_N, np.float64)
  if audio_N.shape[0] == 0:
    audio_N = np.zeros(1)  # No sound at all is silence.
  frame = max(1, min(audio_N.shape[0], int(_DEFECT_FRAME_SECONDS * sample_rate)))
  n = max(1, audio_N.shape[0] // frame)
  frames_NxF = audio_N[: n * frame].reshape(n, frame)
  rms = np.sqrt(np.mean(frames_NxF**2, axis=1))
  sounding = rms > 10 ** (SILENT_DBFS / 20)
  stuck = sounding & (frames_NxF.std(axis=1) < _STUCK_STD_OVER_RMS * rms)
  power = float(np.mean(audio_N**2))
  dc = 1.0 - float(np.mean(high_pass(audio_N, sample_rate) ** 2)) / power if power > 0 else 0.0
  return {
    'silent': float(np.mean(~sounding)),
    'stuck': float(np.mean(stuck)),
    'clipped': float(np.mean(np.abs(audio_N) >= _FULL_SCALE)),
    'dc': float(np.clip(dc, 0.0, 1.0)),
  }


def spectral_change(audio_N: np.ndarray, sample_rate: int) -> float:
  """How much the clip keeps changing: dB, small for a steady tone, a buzz or a loop.

  The mean absolute difference of the log-mel spectrum (DYNAMIC_RANGE_DB deep) between
  each frame and the frame a lag later, at the lag where it is smallest among lags of a
  30 ms to 1 s loop: a tone matches itself at any lag, a loop at its length, music at none.
  """
  import librosa  # pylint: disable=g-import-not-at-top

  n_fft = _n_fft(sample_rate)
  # A loop may be any length: at a 4 ms hop the best lag is within 2 ms of it. At 16 ms
  # the frames of a 363 ms loop of a noisy clip missed each other by up to 8 ms and it
  # changed half as much as music (0.75 dB against 1.34 to 2); at 4 ms, 0.2 against 2 to 3.
  hop = n_fft // 16
  audio_N = high_pass(audio_N, sample_rate).astype(np.float32)
  if audio_N.shape[0] < n_fft:
    audio_N = np.pad(audio_N, (0, n_fft - audio_N.shape[0]))
  power_FxT = _within_range(np.abs(librosa.stft(audio_N, n_fft=n_fft, hop_length=hop)) ** 2 + _EPS)
  mel_db_MxT = 10 * np.log10(
    librosa.feature.melspectrogram(S=power_FxT, sr=sample_rate, n_mels=N_MELS) + _EPS
  )
  frames_per_second = sample_rate / hop
  lo = max(1, int(_LOOP_SECONDS[0] * frames_per_second))
  hi = min(int(_LOOP_SECONDS[1] * frames_per_second), mel_db_MxT.shape[1] // 2)
  if hi < lo:
    return 0.0
  return float(
    min(np.mean(np.abs(mel_db_MxT[:, lag:] - mel_db_MxT[:, :-lag])) for lag in range(lo, hi + 1))
  )


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
  noise_excess: dict  # group -> how far white or brown noise is, in typical distances (>= 1)
  allowed: dict  # defect -> 95th percentile share in the reference (silent, clipped, dc)
  least_change: float  # 5th percentile of the reference segments' spectral_change (dB)
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
  shares = {'silent': [], 'clipped': [], 'dc': []}
  changes = []
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
      changes.append(spectral_change(piece_N, sample_rate))
  if not used:
    raise ValueError(f'{source or "reference"}: no readable audio among {len(paths)} files.')
  mean = {g: np.mean(r, axis=0) for g, r in rows.items()}
  spread = {g: np.maximum(np.std(r, axis=0), _SPREAD_FLOORS[g]) for g, r in rows.items()}
  profile = Profile(
    sample_rate=int(sample_rate),
    mean={g: m.tolist() for g, m in mean.items()},
    spread={g: s.tolist() for g, s in spread.items()},
    typical_distance={},
    noise_excess={},
    allowed={k: float(np.percentile(v, 95)) for k, v in shares.items()},
    least_change=float(np.percentile(changes, 5)),
    num_segments=len(rows['timbre']),
    source=source,
    examples=_examples(used, source),
  )
  # Closeness 1 means "as close as nine reference segments out of ten": never below the
  # spread itself, so a tiny reference does not make every clip look far.
  profile.typical_distance = {
    g: max(1.0, float(np.percentile([_distance(g, r, profile) for r in rows[g]], 90))) for g in rows
  }
  profile.noise_excess = _noise_excess(profile)
  return profile


def _excess(group: str, values, profile: Profile) -> float:
  """How far beyond the typical reference segment, in typical distances (0 within it)."""
  return max(0.0, _distance(group, values, profile) / profile.typical_distance[group] - 1.0)


def _noise_excess(profile: Profile) -> dict:
  """Per group, the excess of the nearer of white and brown noise at the reference's level.

  The scale of each group's closeness: a reference's own spread says what is typical, not
  how far is far. A synthetic corpus varies so little that a model's first clear notes are
  dozens of spreads away; measured in noise distances they are near.
  """
  rng = np.random.default_rng(0)
  rate = profile.sample_rate
  n = int(SEGMENT_SECONDS * rate)
  rms = 10 ** (profile.mean['loudness'][0] / 20)
  walk = high_pass(np.cumsum(rng.normal(0, 1, n)), rate)
  noises = [rng.normal(0, 1, n), walk]
  excess = [
    {g: _excess(g, v, profile) for g, v in features(rms * x / x.std(), rate).items()}
    for x in noises
  ]
  return {g: max(1.0, min(e[g] for e in excess)) for g in GROUP_WEIGHTS}


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
    # Another version's features: training makes it again; until then, say why scores drop.
    logging.warning(
      '%s: made by another version of the score (%s, this one reads %d); clips are scored '
      'on their defects only until training resumes and remakes it, or pass the training '
      'audio as --reference.',
      path,
      stored.get('version'),
      PROFILE_VERSION,
    )
    return None
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
  tables = [stored[k] for k in ('mean', 'spread', 'typical_distance', 'noise_excess', 'allowed')]
  if not all(isinstance(t, dict) for t in tables):
    return 'mean, spread, typical_distance, noise_excess and allowed must be objects'
  mean, spread, distance, noise, allowed = tables
  for group, floor in _SPREAD_FLOORS.items():
    size = floor.shape[0]
    if not (_numbers(mean.get(group), size) and _numbers(spread.get(group), size)):
      return f'mean or spread of {group!r} is not {size} numbers'
    if min(spread[group]) <= 0 or not all(
      _numbers([t.get(group)], 1) and t[group] > 0 for t in (distance, noise)
    ):
      return f'spread, typical_distance or noise_excess of {group!r} not positive'
  if not all(_numbers([allowed.get(k)], 1) for k in ('silent', 'clipped', 'dc')):
    return 'allowed is not shares of silent, clipped and dc'
  if not _numbers([stored['least_change']], 1) or stored['least_change'] <= 0:
    return 'least_change is not a positive number'
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
  least_change = profile.least_change if profile else DEFAULT_LEAST_CHANGE_DB
  # Squared: a clip a little steadier than the steadiest reference segment is hardly
  # wrong; one that matches itself a loop later (tone, buzz, stuck pattern) is.
  shortfall = 1 - spectral_change(audio_N, sample_rate) / least_change
  # Of the sounding part only: silence is already counted as such.
  d['steady'] = float(np.clip(shortfall, 0, 1) ** 2 * (1 - d['silent']))
  allowed = dict(profile.allowed if profile else {})
  allowed['dc'] = max(allowed.get('dc', 0.0), DC_UNHEARD_SHARE)
  scale = {'dc': 1.0 / (1.0 - allowed['dc'])}  # All DC costs the full weight.
  penalty = sum(
    w * scale.get(k, 1.0) * max(0.0, d[k] - allowed.get(k, 0.0)) for k, w in PENALTY_WEIGHTS.items()
  )
  closeness = 1.0
  if profile is not None:
    audio_N = audio_io.resample(audio_N, sample_rate, profile.sample_rate)
    log_closeness = 0.0
    for g, v in features(audio_N, profile.sample_rate).items():
      # 1 within typical reach, 1/2 as far as noise, 1/5 twice as far.
      parts[g] = 1.0 / (1.0 + (_excess(g, v, profile) / profile.noise_excess[g]) ** 2)
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
