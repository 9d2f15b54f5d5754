r"""Measures the silence guard on a trained run: the same clips without and with it.

    python scripts/measure_silence_guard.py --workdir=runs/album --num_seqs=32 --duration=60 \
        --max_silence=0,2 --out_dir=/tmp/guard --table=guard.md

For each ``--max_silence`` value (0: off) it generates ``--num_seqs`` clips of ``--duration``
seconds from the same checkpoint, temperature and rng seed (``samplernn-generate``'s code),
and reports per setting:

* the share of silent seconds (20 ms frames under the score's -60 dBFS);
* the clips' curation scores against the run's training audio: median and best;
* the longest stretch with no more than 1 s of silence in it, longest and median over clips;
* the revivals, and generation speed (x real time per sequence, compilation included, and
  the wall seconds of the whole run).

The table (markdown) goes to ``--table``, the figures as JSON beside it; the README's table
was made with this script on ``configs/soundtrack.py`` trained on Debian's hyperrogue-music.
"""

import json
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # benchmarks, when run as a script from anywhere.

from benchmarks import machine  # noqa: E402
from samplernn_jax import audio_io  # noqa: E402
from samplernn_jax.listening import clip_score  # noqa: E402
from samplernn_jax.listening import clips  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'A trained run.', required=True)
flags.DEFINE_integer('step', None, 'Checkpoint step; default: the latest.')
flags.DEFINE_integer('num_seqs', 32, 'Clips per setting (one batch).')
flags.DEFINE_float('duration', 60.0, 'Seconds per clip.')
flags.DEFINE_list('max_silence', ['0', '2'], 'Guard settings to compare, seconds (0: off).')
flags.DEFINE_list(
  'temperature', ['0.95'], 'Sampling temperatures, one per clip (the last one repeats).'
)
flags.DEFINE_integer('rng_seed', 0, 'The same seed for every setting.')
flags.DEFINE_string(
  'seed_audio', None, 'Prime every clip on this audio (e.g. a second of silence) first.'
)
flags.DEFINE_bool(
  'score_only', False, 'Rescore the clips of an earlier run of this script (same flags) only.'
)
flags.DEFINE_string('out_dir', None, 'Folder for the clips (one subfolder per setting).')
flags.DEFINE_string('table', None, 'Markdown table to write; the JSON goes beside it.')

# How long a silence may be inside a "playing" stretch.
ALLOWED_SILENCE_SECONDS = 1.0


def silent_frames(audio_N: np.ndarray, sample_rate: int) -> np.ndarray:
  """One bool per 20 ms frame: under the score's silent level."""
  frame = int(sample_rate * 0.02)
  frames = audio_N[: audio_N.shape[0] // frame * frame].reshape(-1, frame).astype(np.float64)
  rms = np.sqrt((frames**2).mean(axis=1))
  return rms < 10 ** (clip_score.SILENT_DBFS / 20)


def longest_playing(silent_F: np.ndarray, frame_seconds: float = 0.02) -> float:
  """The longest stretch (s) in which no silence lasts more than ``ALLOWED_SILENCE_SECONDS``."""
  allowed = int(round(ALLOWED_SILENCE_SECONDS / frame_seconds))
  best = start = run = 0
  for i, s in enumerate(silent_F):
    run = run + 1 if s else 0
    if run > allowed:  # This silence breaks the stretch; the next starts after it.
      start = i + 1
    best = max(best, i + 1 - start)
  return best * frame_seconds


def measure(max_silence: float, earlier: dict) -> dict:
  out_dir = os.path.join(FLAGS.out_dir, f'max_silence={max_silence:g}')
  if FLAGS.score_only:
    return rescore(out_dir, earlier[max_silence])
  os.makedirs(out_dir, exist_ok=True)
  start = time.perf_counter()
  result = clips.generate_files(
    FLAGS.workdir,
    os.path.join(out_dir, 'clip.wav'),
    step=FLAGS.step,
    num_seqs=FLAGS.num_seqs,
    duration=FLAGS.duration,
    temperatures=[float(t) for t in FLAGS.temperature],
    rng_seed=FLAGS.rng_seed,
    seed_audio=FLAGS.seed_audio,
    max_silence=max_silence,
    overwrite=True,
  )
  wall = time.perf_counter() - start  # Scoring included.
  row = {
    'max_silence': max_silence,
    'step': result['step'],
    'revivals': sum(len(s['revivals']) for s in result['scores']),
    'x_real_time': result['x_real_time'],
    'wall_seconds': wall,
  }
  return dict(row, **summary(result['paths'], [s['score'] for s in result['scores']]))


def rescore(out_dir: str, row: dict) -> dict:
  """``row`` (an earlier run's) with the clips in ``out_dir`` scored by today's score."""
  paths = sorted(os.path.join(out_dir, n) for n in os.listdir(out_dir) if n.endswith('.wav'))
  profile = clip_score.reference_profile(FLAGS.workdir)
  return dict(row, **summary(paths, [clip_score.score_file(p, profile)['score'] for p in paths]))


def summary(paths: list, scores: list) -> dict:
  silent_share, playing = [], []
  for path in paths:
    audio, rate = audio_io.read_audio(path)
    silent = silent_frames(audio_io.to_mono(audio), rate)
    silent_share.append(float(silent.mean()))
    playing.append(longest_playing(silent))
  return {
    'silent_share': float(np.mean(silent_share)),
    'score_median': float(np.median(scores)),
    'score_best': float(np.max(scores)),
    'longest_playing_max': float(np.max(playing)),
    'longest_playing_median': float(np.median(playing)),
  }


def table(rows: list) -> str:
  lines = [
    '| guard | silent seconds | score median / best | longest playing stretch, '
    'best / median clip | revivals | speed (x real time per sequence) |',
    '| --- | --- | --- | --- | --- | --- |',
  ]
  for r in rows:
    guard = 'off' if r['max_silence'] == 0 else f'--max_silence={r["max_silence"]:g}'
    lines.append(
      f'| {guard} | {100 * r["silent_share"]:.1f}% | {r["score_median"]:.2f} / '
      f'{r["score_best"]:.2f} | {r["longest_playing_max"]:.1f} s / '
      f'{r["longest_playing_median"]:.1f} s | {r["revivals"]} | {r["x_real_time"]:.3f} |'
    )
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  if not FLAGS.out_dir or not FLAGS.table:
    raise app.UsageError('--out_dir and --table are required.')
  json_path = os.path.splitext(FLAGS.table)[0] + '.json'
  # Scores against the run's own profile or none: without one they would count only defects.
  clip_score.reference_profile(FLAGS.workdir)
  earlier = {}
  if FLAGS.score_only:
    with open(json_path) as f:
      earlier = {r['max_silence']: r for r in json.load(f)['rows']}
  rows = [measure(float(m), earlier) for m in FLAGS.max_silence]
  seeded = f', primed on {FLAGS.seed_audio}' if FLAGS.seed_audio else ''
  header = (
    f'{FLAGS.num_seqs} clips of {FLAGS.duration:g} s per setting{seeded}, temperatures '
    f'{" ".join(sorted(set(FLAGS.temperature), reverse=True))} (repeating), rng seed '
    f'{FLAGS.rng_seed}, checkpoint step '
    f'{rows[0]["step"]} of {FLAGS.workdir}; {machine.cpu_model()}, {os.cpu_count()} cores.\n\n'
  )
  with open(FLAGS.table, 'w') as f:
    f.write(header + table(rows))
  with open(json_path, 'w') as f:
    json.dump({'settings': dict(FLAGS.flag_values_dict()), 'rows': rows}, f, indent=2, default=str)
  print(header + table(rows))


if __name__ == '__main__':
  app.run(main)
