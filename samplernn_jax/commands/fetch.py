r"""``samplernn-fetch``: download the audio of playlists or single URLs with yt-dlp.

  samplernn-fetch --output_dir=downloads URL [URL ...]
  samplernn-fetch --output_dir=downloads --batch_file=urls.txt

An item that fails is reported and skipped; a summary ends the run, and the exit status is
1 if anything failed. What is downloaded and how it is named: ``samplernn_jax.corpus.fetch``.
"""

import sys

from absl import app
from absl import flags

from samplernn_jax.commands import cli
from samplernn_jax.corpus import fetch

FLAGS = flags.FLAGS

flags.DEFINE_string('output_dir', 'downloads', 'Directory for the downloads.')
flags.DEFINE_list(
  'urls',
  [],
  'URLs of items or playlists, comma-separated; more may follow as positional arguments.',
)
flags.DEFINE_string('batch_file', None, 'A file of URLs, one a line (# comments).')
flags.DEFINE_string('format', 'bestaudio/best', 'yt-dlp format selector.')
flags.DEFINE_bool(
  'enable_file_urls',
  False,
  'Accept file:// URLs (off by default, as in '
  "yt-dlp); yt-dlp's spelling --enable-file-urls works too.",
)

# yt-dlp's own hints spell its options with dashes; accept them for ours.
_DASHED = {
  '--enable-file-urls': '--enable_file_urls',
  '--no-enable-file-urls': '--noenable_file_urls',
  '--batch-file': '--batch_file',
  '--output-dir': '--output_dir',
}


def _undash(argv: list[str]) -> list[str]:
  out = []
  for arg in argv:
    name, eq, value = arg.partition('=')
    out.append(_DASHED.get(name, name) + eq + value)
  return out


def main(argv):
  urls = list(FLAGS.urls) + list(argv[1:])
  if FLAGS.batch_file:
    urls += fetch.read_batch_file(FLAGS.batch_file)
  if not urls:
    raise app.UsageError('Give URLs as arguments, with --urls or with --batch_file.')
  report = fetch.fetch(
    urls, FLAGS.output_dir, audio_format=FLAGS.format, enable_file_urls=FLAGS.enable_file_urls
  )
  print(report.summary(), flush=True)
  if report.errors:
    raise ValueError(
      f'{len(report.errors)} failed (listed above); a re-run fetches only '
      'what is not in the archive yet.'
    )


def run():
  """Console-script entry point."""
  sys.argv = _undash(sys.argv)
  cli.run(main, 'samplernn-fetch')


if __name__ == '__main__':
  run()
