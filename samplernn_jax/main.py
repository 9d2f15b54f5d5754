"""``samplernn-train``: trains SampleRNN in a workdir (resuming what is there).

  samplernn-train --workdir=runs/demo --config=configs/demo.py
  samplernn-train --workdir=runs/piano --data_dir=chunks/ --config.train.batch_size=32

``--config`` defaults to ``configs/default.py`` (PRiSM's defaults); any field is overridden
with ``--config.<section>.<field>=value``. Without ``--data_dir`` the demo corpus is
synthesized into the workdir. Multi-host: pass ``--coordinator_address``,
``--num_processes`` and ``--process_id`` (or set JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID) on every host.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from samplernn_jax import backend
from samplernn_jax import cli
from samplernn_jax import config as config_lib
from samplernn_jax import default_config
from samplernn_jax import train

FLAGS = flags.FLAGS


# Defined when the command runs, not on import, like the other commands: their flags share
# names (workdir) and a program may import several of these modules.
def _define_flags():
  config_flags.DEFINE_config_file(
      'config', os.path.abspath(default_config.__file__), 'Training configuration file '
      '(configs/*.py); override any field with --config.SECTION.FIELD=VALUE.',
      lock_config=True)
  cli.own_flags('config')
  program = cli.program()
  flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and audio; an '
                      'existing one is resumed.', **program)
  flags.DEFINE_string('data_dir', None, 'Directory of audio files; if absent, the demo corpus '
                      'is synthesized into WORKDIR/demo_corpus.', **program)
  flags.DEFINE_integer('resume_from', None, 'Resume from this checkpoint step instead of the '
                       'latest (newer checkpoints are deleted).', **program)
  flags.DEFINE_string('coordinator_address', os.environ.get('JAX_COORDINATOR_ADDRESS'),
                      'host:port of process 0, for multi-host training.', **program)
  flags.DEFINE_integer('num_processes', None, 'Processes in all, for multi-host training.',
                       **program)
  flags.DEFINE_integer('process_id', None, "This process's index, for multi-host training.",
                       **program)
  flags.DEFINE_string('compilation_cache_dir', None, 'Where compiled steps are kept so the next '
                      'run skips compiling; default $JAX_COMPILATION_CACHE_DIR or '
                      '~/.cache/samplernn_jax/jax; an empty value turns the cache off.',
                      **program)


def _config():
  """``--config`` loaded and checked, or ValueError naming the flag (read lazily)."""
  try:
    config = FLAGS.config
    config.keys()  # A file that failed to load raises on first use.
  except OSError:
    path = FLAGS['config'].config_filename
    raise ValueError(f'--config={path}: no such config file; pass one of configs/*.py, '
                     'e.g. --config=configs/demo.py.') from None
  return config_lib.validate(config)


def _config_flag_error(error: Exception) -> str:
  """A config file that does not load, or ``--config.a.b`` naming no field, in one line."""
  text = cli.describe(error)
  for arg in sys.argv[1:]:
    name = arg.split('=', 1)[0]
    if name.startswith('--config.') and f"'{name.rsplit('.', 1)[-1]}'" in text:
      return f'{name}: no such config field ({text})'
  return f'--config: cannot load it ({text})'


def _env_int(name: str):
  value = os.environ.get(name)
  return int(value) if value else None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  config = _config()
  backend.enable_compilation_cache(FLAGS.compilation_cache_dir)
  num_processes = FLAGS.num_processes or _env_int('JAX_NUM_PROCESSES')
  process_id = FLAGS.process_id if FLAGS.process_id is not None else _env_int('JAX_PROCESS_ID')
  if FLAGS.coordinator_address or (num_processes or 1) > 1:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  logging.info('JAX process %d of %d; %d local / %d global devices: %s', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(), jax.devices())
  train.train_and_evaluate(config, FLAGS.workdir, FLAGS.data_dir, FLAGS.resume_from)


def run():
  """Console-script entry point."""
  try:
    # config_flags loads the file and checks the overrides here, before absl parses.
    _define_flags()
  except Exception as e:  # pylint: disable=broad-except
    cli.fail('samplernn-train', _config_flag_error(e))
  flags.mark_flags_as_required(['workdir'])
  # What people must act on (bad data dir or config, a diverged run, a full disk): one
  # line, not a trace.
  cli.run(main, 'samplernn-train', (FileNotFoundError, ValueError, FloatingPointError, OSError))


if __name__ == '__main__':
  run()
