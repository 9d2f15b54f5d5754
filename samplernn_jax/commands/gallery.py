"""``samplernn-gallery``: builds a run's listening room, ``WORKDIR/gallery/index.html``.

    samplernn-gallery --workdir=runs/demo

Training and samplernn-generate rebuild the page after they write clips; this builds it on
demand, e.g. for an imported model or a run trained before profiles (with ``--reference``).
What the page holds: ``samplernn_jax.listening.gallery``.
"""

import urllib.parse

from absl import app
from absl import flags

from samplernn_jax.commands import cli
from samplernn_jax.listening import gallery

FLAGS = flags.FLAGS

flags.DEFINE_string(
  'workdir', None, 'Run folder (training or samplernn-generate output).', required=True
)
flags.DEFINE_string(
  'reference',
  None,
  'Folder of training audio to profile when the '
  'workdir stores no profile (runs trained before profiles, imports).',
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  index = gallery.build(FLAGS.workdir, FLAGS.reference)
  print(f'Wrote {index}\nOpen file://{urllib.parse.quote(index)} in a browser.')


def run():
  """Console-script entry point."""
  cli.run(main, 'samplernn-gallery')


if __name__ == '__main__':
  run()
