"""Does the curation score rank real audio above broken audio? The AUC of that ranking.

Held-out clips of the reference's own kind are the positives; the negatives are the
defects generated clips show: silence, near-silence with clicks, white and brown noise, a
stuck DC level, hard clipping, and the output of an untrained model. Used by
``clip_score_test`` on the demo corpus and by hand on real music:

    python -m tests.score_validation --data_dir=chunks/ --clip_seconds=4

splits the chunks by source (the name before ``_NNNNN.wav``, as samplernn-prepare names
them), profiles two thirds of the sources and scores chunks of the other third against
every kind of negative; prints the AUC overall, per kind and per part of the score.
"""

import json
import os
import re
import sys

from absl import app
from absl import flags
import numpy as np

from samplernn_jax import audio_io
from samplernn_jax.listening import clip_score

KINDS = ('silence', 'clicks', 'white_noise', 'brown_noise', 'stuck_dc', 'clipped', 'untrained')
# What each part contributes: the AUC of the part alone (penalties negated).
PARTS = ('closeness', *clip_score.GROUP_WEIGHTS, *clip_score.PENALTY_WEIGHTS)


def auc(positives, negatives) -> float:
  """P(positive > negative), ties counting half (the Mann-Whitney U statistic)."""
  p = np.asarray(positives, np.float64)[:, None]
  n = np.asarray(negatives, np.float64)[None, :]
  return float(np.mean((p > n) + 0.5 * (p == n)))


def untrained_clips(num: int, num_samples: int, seed: int = 0) -> np.ndarray:
  """float32[num, num_samples]: a randomly initialized tiny SampleRNN at temperature 1."""
  import jax  # pylint: disable=g-import-not-at-top  (only this negative needs the model)

  from samplernn_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  from samplernn_jax import quantization  # pylint: disable=g-import-not-at-top
  from samplernn_jax import sampler  # pylint: disable=g-import-not-at-top
  from tests.conftest import load_config  # pylint: disable=g-import-not-at-top

  m = load_config('tiny').model
  params = model_lib.init_params(model_lib.from_config(m), jax.random.key(seed))
  levels = sampler.generate(
    params, m, num_samples, [1.0] * num, jax.random.key(seed + 1), chunk_size=4096
  )
  return np.asarray(quantization.decode(np.asarray(levels), m.q_type, m.q_levels), np.float32)


def degraded(kind: str, clip_N: np.ndarray, sample_rate: int, rng: np.random.Generator):
  """A negative of ``kind`` as long as ``clip_N`` (a held-out clip), at its loudness."""
  n = clip_N.shape[0]
  rms = float(np.sqrt(np.mean(clip_N**2))) or 0.1
  if kind == 'silence':
    return np.zeros(n, np.float32)
  if kind == 'clicks':
    out = rng.normal(0, 10 ** (-70 / 20), n)
    out[rng.choice(n, max(1, int(3 * n / sample_rate)), replace=False)] = 0.5
    return out.astype(np.float32)
  if kind == 'white_noise':
    return np.clip(rng.normal(0, rms, n), -1, 1).astype(np.float32)
  if kind == 'brown_noise':
    walk = np.cumsum(rng.normal(0, 1, n))
    walk -= np.convolve(walk, np.ones(801) / 801, 'same')  # Keep the walk near zero.
    return np.clip(walk * rms / walk.std(), -1, 1).astype(np.float32)
  if kind == 'stuck_dc':
    return np.full(n, rng.uniform(0.2, 0.6) * rng.choice([-1, 1]), np.float32)
  if kind == 'clipped':
    return np.clip(clip_N * rng.uniform(6, 12), -1, 1).astype(np.float32)
  raise ValueError(f'unknown kind {kind!r}')


def evaluate(
  profile: clip_score.Profile, held_out, sample_rate: int, clip_seconds: float, seed: int = 0
) -> dict:
  """Scores ``held_out`` clips (float audio) and one negative of each kind per clip.

  Returns ``{'auc', 'auc_per_kind', 'median_score', 'auc_per_part', 'auc_without',
  'positives', 'negatives'}``: AUCs of the score, of each part alone and of the score
  without each group (or without the penalties); the lists hold every clip's parts.
  """
  rng = np.random.default_rng(seed)
  n = int(clip_seconds * sample_rate)
  clips = [c[:n] for c in held_out]
  untrained = untrained_clips(len(clips), n, seed)
  positives = [dict(clip_score.score_audio(c, sample_rate, profile), kind='real') for c in clips]
  negatives = []
  for i, c in enumerate(clips):
    for kind in KINDS:
      audio = untrained[i] if kind == 'untrained' else degraded(kind, c, sample_rate, rng)
      negatives.append(dict(clip_score.score_audio(audio, sample_rate, profile), kind=kind))
  pos = [p['score'] for p in positives]
  sign = lambda part: -1 if part in clip_score.PENALTY_WEIGHTS else 1

  def without(part, p):
    """The score with one group or all penalties (``part='penalty'``) left out."""
    if part == 'penalty':
      return p['closeness']
    rest = {g: w for g, w in clip_score.GROUP_WEIGHTS.items() if g != part}
    log_c = sum(w * np.log(max(p[g], 1e-300)) for g, w in rest.items()) / sum(rest.values())
    return np.exp(log_c) - p['penalty']

  return {
    'auc': auc(pos, [q['score'] for q in negatives]),
    'auc_without': {
      part: auc([without(part, p) for p in positives], [without(part, q) for q in negatives])
      for part in (*clip_score.GROUP_WEIGHTS, 'penalty')
    },
    'auc_per_kind': {k: auc(pos, [q['score'] for q in negatives if q['kind'] == k]) for k in KINDS},
    'median_score': {
      k: float(np.median([q['score'] for q in positives + negatives if q['kind'] == k]))
      for k in ('real', *KINDS)
    },
    'auc_per_part': {
      part: auc(
        [sign(part) * p[part] for p in positives], [sign(part) * q[part] for q in negatives]
      )
      for part in PARTS
    },
    'positives': positives,
    'negatives': negatives,
  }


def split_by_source(files, held_out_every: int = 3):
  """(reference, held out): every ``held_out_every``-th source's chunks are held out."""
  source = lambda f: re.sub(r'_\d{5}\.wav$', '', os.path.basename(f))
  sources = sorted({source(f) for f in files})
  held = set(sources[held_out_every - 1 :: held_out_every])
  return ([f for f in files if source(f) not in held], [f for f in files if source(f) in held])


def _main(argv):
  del argv
  f = flags.FLAGS
  files = clip_score.audio_files([f.data_dir])
  reference, held_out = split_by_source(files)
  profile = clip_score.make_profile(reference, f.sample_rate, f.data_dir)
  held_out = held_out[:: max(1, len(held_out) // f.num_held_out)][: f.num_held_out]
  audio = [audio_io.read_mono(p, profile.sample_rate) for p in held_out]
  result = evaluate(profile, audio, profile.sample_rate, f.clip_seconds)
  print(
    f'{len(reference)} reference files ({profile.num_segments} segments), '
    f'{len(held_out)} held-out clips of {f.clip_seconds} s from other sources'
  )
  summary = ('auc', 'auc_per_kind', 'median_score', 'auc_per_part', 'auc_without')
  print(json.dumps({k: result[k] for k in summary}, indent=1))
  worst = sorted(result['positives'], key=lambda p: p['score'])[:3]
  best_negative = sorted(result['negatives'], key=lambda p: -p['score'])[:3]
  for p in worst + best_negative:
    print({k: round(v, 3) if isinstance(v, float) else v for k, v in p.items()})


if __name__ == '__main__':
  flags.DEFINE_string('data_dir', None, 'Chunks from samplernn-prepare.')
  flags.DEFINE_integer('sample_rate', None, 'Profile rate; default: the first file\'s.')
  flags.DEFINE_float('clip_seconds', 4.0, 'Length of each scored clip.')
  flags.DEFINE_integer('num_held_out', 40, 'Held-out clips to score.')
  flags.mark_flags_as_required(['data_dir'])
  sys.exit(app.run(_main))
