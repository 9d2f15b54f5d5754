r"""``samplernn-prepare``: cut audio files into equal training chunks, as PRiSM's chunk_audio.py.

  samplernn-prepare --input=downloads --output_dir=chunks \
      [--sample_rate=16000] [--chunk_length_ms=8000] [--overlap_ms=1000] \
      [--silence_thresh_db=-64] [--num_workers=N]

Where the chunks start and which are dropped as silent: ``samplernn_jax.corpus.prepare``. A file
that cannot be decoded is reported and skipped; the run then ends with status 1.
"""

import os
import sys

from absl import app
from absl import flags

from samplernn_jax.commands import cli
from samplernn_jax.corpus import prepare

FLAGS = flags.FLAGS

flags.DEFINE_list(
  'input',
  [],
  'Audio files and/or directories (searched recursively), '
  'comma-separated; more may follow as positional arguments.',
)
flags.DEFINE_string('output_dir', 'chunks', 'Directory for the chunks.')
flags.DEFINE_integer('sample_rate', 16000, 'Sample rate of the chunks (Hz).')
flags.DEFINE_integer('chunk_length_ms', 8000, 'Chunk length (ms).')
flags.DEFINE_integer('overlap_ms', 1000, 'Overlap of consecutive chunks (ms).')
flags.DEFINE_float(
  'silence_thresh_db', -64.0, 'dBFS at or below which a half-chunk stretch is silence.'
)
flags.DEFINE_integer(
  'num_workers', os.cpu_count() or 1, 'Processes decoding files in parallel (1: inline).'
)


def main(argv):
  inputs = list(FLAGS.input) + list(argv[1:])
  if not inputs:
    raise app.UsageError('Name audio files or directories with --input.')
  settings = prepare.Settings(
    sample_rate=FLAGS.sample_rate,
    chunk_length_ms=FLAGS.chunk_length_ms,
    overlap_ms=FLAGS.overlap_ms,
    silence_thresh_db=FLAGS.silence_thresh_db,
  )
  # A bar only for people watching: in a log it is noise before the summary.
  results = prepare.prepare(
    inputs, FLAGS.output_dir, settings, num_workers=FLAGS.num_workers, progress=sys.stderr.isatty()
  )
  print(prepare.summary(results, FLAGS.output_dir))
  reason = prepare.problem(results)
  if reason:
    raise ValueError(reason)


def run():
  """Console-script entry point."""
  cli.run(main, 'samplernn-prepare')


if __name__ == '__main__':
  run()
