"""``samplernn-import-prism``: a PRiSM SampleRNN (TF2) checkpoint as this project's.

  samplernn-import-prism --checkpoint=logdir/default/DATE/model.ckpt-100 \
      --config=default.config.json --workdir=runs/imported

Writes an Orbax checkpoint with the model config beside it, which samplernn-generate reads
and samplernn-train resumes; the mapping of the variables: ``samplernn_jax.compat.prism``.
"""

from absl import app
from absl import flags

from samplernn_jax.commands import cli
from samplernn_jax.compat import prism

FLAGS = flags.FLAGS

flags.DEFINE_string(
  'checkpoint',
  None,
  'PRiSM checkpoint prefix, e.g. logdir/default/DATE/model.ckpt-100.',
  required=True,
)
flags.DEFINE_string(
  'config', None, "PRiSM's JSON model config (default.config.json).", required=True
)
flags.DEFINE_string('workdir', None, 'Where to write the Orbax checkpoint.', required=True)
flags.DEFINE_integer('step', None, 'Step to store it under; default: the N of model.ckpt-N.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  step = FLAGS.step if FLAGS.step is not None else prism.checkpoint_step(FLAGS.checkpoint)
  _, config = prism.import_checkpoint(FLAGS.checkpoint, FLAGS.config, FLAGS.workdir, step=step)
  m = config.model
  print(
    f'Imported {FLAGS.checkpoint} -> {FLAGS.workdir} (step {step}; '
    f'{len(m.frame_sizes) + 1}-tier {m.rnn_type}, dim {m.dim}).'
  )


def run():
  """Console-script entry point."""
  cli.run(main, 'samplernn-import-prism')


if __name__ == '__main__':
  run()
