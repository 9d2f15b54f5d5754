"""``samplernn-score``: the curation score of audio files against a profile of training audio.

    samplernn-score --reference=runs/demo runs/demo/generated
    samplernn-score --reference=chunks/ my_clip.wav other_clips/

prints one JSON object a line per audio file: ``path``, ``score`` and the parts (what they
mean: ``samplernn_jax.listening.clip_score``). A file that is not readable audio is named on stderr,
and the run ends with status 1.
"""

import json
import sys

from absl import app
from absl import flags

from samplernn_jax.commands import cli
from samplernn_jax.listening import clip_score

FLAGS = flags.FLAGS

flags.DEFINE_string(
  'reference',
  None,
  'A workdir (its stored profile of the training audio) or a folder of audio to profile.',
  required=True,
)


def main(argv):
  inputs = argv[1:]
  if not inputs:
    raise app.UsageError('pass audio files or folders to score after the flags')
  profile = clip_score.reference_profile(FLAGS.reference)
  paths = clip_score.audio_files(inputs)
  failed = 0
  for path in paths:
    result = clip_score.score_file(path, profile)
    if 'error' in result:
      failed += 1
      print(f'samplernn-score: {path}: {result["error"]}', file=sys.stderr)
      continue
    print(
      json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}),
      flush=True,
    )
  if failed:
    raise ValueError(f'{failed} of {len(paths)} files could not be scored (named above).')


def run():
  """Console-script entry point."""
  cli.run(main, 'samplernn-score')


if __name__ == '__main__':
  run()
