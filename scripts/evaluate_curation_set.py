r"""How well a clip score ranks the labelled set that scripts/make_curation_set.py built.

    python scripts/evaluate_curation_set.py --set=curation_set/ --reference=chunks/ \
        --demo=runs/demo --demo_clips=demo_clips/ --out=benchmarks/results/curation

Scores every clip against ``--reference`` (a workdir or a folder of the training audio) and
reports, in ``OUT.json`` and ``OUT.md``:

* the AUC of real held-out audio against each failure kind (the chance that a real clip
  scores above a clip of that kind; 1 is a perfect ranking);
* Spearman's rho of the stage clips' scores with their checkpoints' validation bits,
  negated (1: every better-trained checkpoint's clips score higher), with a 95% interval
  over the clips resampled, the AUC of the later half of the checkpoints' clips above the
  earlier half's, and each stage's median;
* the demo model's clips (``--demo_clips``) scored against its own training audio
  (``--demo``): the gallery shows a score >= 0.7 in green.

``--embedding_onnx`` (basic-pitch's ``nmp.onnx``, which ships inside the basic-pitch wheel,
run by onnxruntime) scores the same clips the Frechet Audio Distance way instead: the
negated Frechet distance between the Gaussian of a clip's frame embeddings and that of the
reference's, so the two can be compared on the same numbers.
"""

import json
import os
import sys

from absl import app
from absl import flags
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from samplernn_jax import audio_io  # noqa: E402  (needs the repository on sys.path first)
from samplernn_jax.listening import clip_score  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string('set', None, 'Folder with the clips and labels.json.')
flags.DEFINE_string('reference', None, 'Workdir or folder of the run\'s training audio.')
flags.DEFINE_string('demo', None, 'The demo run\'s workdir (its demo_corpus is the reference).')
flags.DEFINE_string('demo_clips', None, 'Folder of the demo model\'s clips to score.')
flags.DEFINE_string('out', None, 'Writes OUT.json and OUT.md.')
flags.DEFINE_string('embedding_onnx', None, 'basic-pitch nmp.onnx: score by Frechet distance.')
flags.DEFINE_enum('embedding_output', 'contour', ['contour', 'all'], 'Which posteriorgrams.')
flags.DEFINE_string('label', 'hand features', 'What the scores are, for the report.')

GREEN = 0.7  # The gallery shows scores from here up in green.
FAILURE_KINDS = ('dc_drift', 'steady_tone', 'stuck_loop', 'clicks', 'buzz', 'cold')


def auc(positives, negatives) -> float:
  """P(positive > negative), ties counting half (the Mann-Whitney U statistic)."""
  p = np.asarray(positives, np.float64)[:, None]
  n = np.asarray(negatives, np.float64)[None, :]
  return float(np.mean((p > n) + 0.5 * (p == n)))


def summarize(clips: list, scores: list) -> dict:
  """AUC per failure kind, Spearman with validation bits, medians per kind and stage."""
  from scipy import stats  # pylint: disable=g-import-not-at-top  (comes with librosa)

  by_kind = {}
  for clip, score in zip(clips, scores):
    by_kind.setdefault(clip['kind'], []).append(score)
  real = by_kind['real']
  stage = [(c["val_bits"], s) for c, s in zip(clips, scores) if c['kind'] == 'stage']
  bits, stage_scores = np.array(stage).T
  rho = stats.spearmanr(-bits, stage_scores).statistic
  # A few clips per checkpoint make rho noisy: its 95% interval over clips resampled.
  draws = np.random.default_rng(0).integers(0, bits.shape[0], (2000, bits.shape[0]))
  rhos = [stats.spearmanr(-bits[d], stage_scores[d]).statistic for d in draws]
  steps = sorted({c['step'] for c in clips if c['kind'] == 'stage'})
  best = [s for c, s in zip(clips, scores) if c['kind'] == 'stage' and c['step'] == steps[-1]]
  later = steps[len(steps) // 2 :]
  halves = [
    [s for c, s in zip(clips, scores) if c['kind'] == 'stage' and (c['step'] in later) == half]
    for half in (True, False)
  ]
  failures = [k for k in FAILURE_KINDS if k in by_kind]
  return {
    'auc_per_kind': {k: auc(real, by_kind[k]) for k in failures},
    # The gallery's question: does the last checkpoint's music rank above its failures?
    'auc_last_stage_per_kind': {k: auc(best, by_kind[k]) for k in failures},
    'green_share_per_kind': {k: float(np.mean(np.array(v) >= GREEN)) for k, v in by_kind.items()},
    'auc_stages': auc(real, by_kind['stage']),
    'stage_clips': int(bits.shape[0]),
    'spearman_with_val_bits': float(rho),
    # Coarser than rho, and less at the mercy of checkpoints a few hundredths of a bit apart.
    'auc_later_half_above_earlier': auc(*halves),
    'spearman_95': [float(np.nanpercentile(rhos, 2.5)), float(np.nanpercentile(rhos, 97.5))],
    'median_per_kind': {k: float(np.median(v)) for k, v in by_kind.items()},
    'median_per_stage': {
      str(step): {
        'val_bits': next(c['val_bits'] for c in clips if c['step'] == step),
        'median': float(
          np.median(
            [s for c, s in zip(clips, scores) if c['kind'] == 'stage' and c['step'] == step]
          )
        ),
      }
      for step in steps
    },
  }


def hand_scores(paths: list, reference: str) -> list:
  return [r['score'] for r in clip_score.score_paths(paths, reference)]


def _row(name: str, values) -> str:
  return f'| {name} | ' + ' | '.join(f'{v:.3f}' for v in values) + ' |'


def markdown(label: str, result: dict, demo: dict = None) -> str:
  kinds = result['auc_per_kind']
  lines = [
    f'### {label}',
    '',
    '| ' + ' | '.join(['', *kinds, 'stage clips']) + ' |',
    '|' + '---|' * (len(kinds) + 2),
    _row('AUC: real above', [*kinds.values(), result['auc_stages']]),
    _row('AUC: last checkpoint above', result['auc_last_stage_per_kind'].values()),
    _row('share in the green', [result['green_share_per_kind'][k] for k in [*kinds, 'stage']]),
    '',
    f'Spearman of the stage clips\' scores with -(validation bits): '
    f'{result["spearman_with_val_bits"]:.3f} ({result["stage_clips"]} clips; 95% interval '
    f'{result["spearman_95"][0]:.2f} to {result["spearman_95"][1]:.2f}, clips resampled); '
    f'AUC of the later half of the checkpoints above the earlier: '
    f'{result["auc_later_half_above_earlier"]:.3f}',
    '',
    '| step | val bits | median score |',
    '|---|---|---|',
    *(
      f'| {s} | {v["val_bits"]:.3f} | {v["median"]:.3f} |'
      for s, v in result['median_per_stage'].items()
    ),
    '',
    'Median score per kind: '
    + ', '.join(f'{k} {v:.3f}' for k, v in result['median_per_kind'].items()),
  ]
  if demo:
    lines += ['', f'Demo clips against the demo corpus: {", ".join(f"{s:.2f}" for s in demo)}']
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  with open(os.path.join(FLAGS.set, 'labels.json'), encoding='utf-8') as f:
    clips = json.load(f)['clips']
  paths = [os.path.join(FLAGS.set, c['file']) for c in clips]
  demo_paths = audio_io.find_audio(FLAGS.demo_clips) if FLAGS.demo_clips else []
  if FLAGS.embedding_onnx:
    from scripts import frechet_embedding  # pylint: disable=g-import-not-at-top  (onnxruntime)

    embedding = (FLAGS.embedding_onnx, FLAGS.embedding_output)
    scores = frechet_embedding.scores(paths, FLAGS.reference, *embedding)
    demo = frechet_embedding.scores(demo_paths, FLAGS.demo, *embedding) if demo_paths else []
  else:
    scores = hand_scores(paths, FLAGS.reference)
    demo = hand_scores(demo_paths, FLAGS.demo) if demo_paths else []
  result = summarize(clips, scores)
  result.update(label=FLAGS.label, demo_scores=demo, clips=len(clips))
  result['scores'] = {c['file']: s for c, s in zip(clips, scores)}
  text = markdown(FLAGS.label, result, demo)
  print(text)
  if FLAGS.out:
    os.makedirs(os.path.dirname(FLAGS.out) or '.', exist_ok=True)
    with open(FLAGS.out + '.json', 'w', encoding='utf-8') as f:
      json.dump(result, f, indent=1)
    with open(FLAGS.out + '.md', 'w', encoding='utf-8') as f:
      f.write(text)


if __name__ == '__main__':
  flags.mark_flags_as_required(['set', 'reference'])
  app.run(main)
