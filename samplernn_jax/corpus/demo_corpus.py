"""A built-in training corpus: plucked-string melodies synthesized on the spot.

``synthesize(out_dir)`` writes ``num_files`` deterministic 16-bit mono WAV files of
Karplus-Strong plucks on a pentatonic scale, so training runs without downloading
anything. The defaults (72 files of 4 s at 16 kHz, about 9 MB, under a few seconds
to make) give 65 training files after the default 10% validation split: enough for
the default batch of 64 files.
"""

import os

from absl import logging
import numpy as np

from samplernn_jax import audio_io
from samplernn_jax import workdir as workdir_lib

# A minor pentatonic over two octaves from A2, in semitones.
_SCALE = np.array([0, 3, 5, 7, 10, 12, 15, 17, 19, 22, 24])
_A2_HZ = 110.0


def pluck(
  frequency: float,
  num_samples: int,
  sample_rate: int,
  rng: np.random.Generator,
  decay: float = 0.996,
) -> np.ndarray:
  """One Karplus-Strong string: a noise burst fed back through a two-tap average."""
  period = max(2, int(round(sample_rate / frequency)))
  # y[-1] = 0 sits in front so the first period's y[n - P - 1] term is defined.
  y = np.zeros(1 + max(num_samples, period), np.float32)
  burst = rng.uniform(-1, 1, period)
  # The loop filter passes DC, so a burst with a mean would leave an offset ringing.
  y[1 : 1 + period] = burst - burst.mean()
  # Every sample depends only on the previous period, so one period is one vector step.
  for start in range(1 + period, len(y), period):
    stop = min(start + period, len(y))
    y[start:stop] = (
      0.5 * decay * (y[start - period : stop - period] + y[start - period - 1 : stop - period - 1])
    )
  return y[1 : 1 + num_samples]


def melody(seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
  """float32[round(seconds * sample_rate)] of overlapping plucks, peak 0.8."""
  num_samples = int(round(seconds * sample_rate))
  out_N = np.zeros(num_samples, np.float32)
  root = _A2_HZ * 2 ** (rng.integers(0, 5) / 12)
  onset = 0
  while onset < num_samples:
    semitone = rng.choice(_SCALE)
    ring = min(num_samples - onset, int(1.5 * sample_rate))
    out_N[onset : onset + ring] += pluck(root * 2 ** (semitone / 12), ring, sample_rate, rng)
    onset += int(sample_rate * rng.choice([0.125, 0.25, 0.25, 0.5]))
  return 0.8 * out_N / max(float(np.abs(out_N).max()), 1e-6)


def synthesize(
  out_dir: str, sample_rate: int = 16000, num_files: int = 72, seconds: float = 4.0, seed: int = 0
) -> list[str]:
  """Writes ``demo_{i:03d}.wav`` files into ``out_dir`` and returns their paths.

  The same arguments always produce the same samples.
  """
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for i in range(num_files):
    rng = np.random.default_rng([seed, i])
    path = os.path.join(out_dir, f'demo_{i:03d}.wav')
    audio_io.write_wav_atomic(path, melody(seconds, sample_rate, rng), sample_rate)
    paths.append(path)
  return paths


def in_workdir(workdir: str, sample_rate: int) -> str:
  """``WORKDIR/demo_corpus``, synthesized at ``sample_rate`` unless it holds files already:
  what training reads when no ``--data_dir`` is given."""
  data_dir = os.path.join(os.path.abspath(workdir), workdir_lib.DEMO_CORPUS)
  if not os.path.isdir(data_dir) or not os.listdir(data_dir):
    logging.info('No --data_dir: synthesizing the demo corpus into %s.', data_dir)
    synthesize(data_dir, sample_rate=sample_rate)
  return data_dir
