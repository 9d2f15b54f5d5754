"""``samplernn-train``: trains SampleRNN in a workdir (resuming what is there).

  samplernn-train --workdir=runs/demo --config=configs/demo.py
  samplernn-train --workdir=runs/piano --data_dir=chunks/ --config.train.batch_size=32
  python -m samplernn_jax.commands.train ...   # The same, without the console script.

``--config`` defaults to ``configs/default.py`` (PRiSM's defaults); any field is overridden
with ``--config.<section>.<field>=value``. Without ``--data_dir`` the demo corpus is
synthesized into the workdir. Multi-process: under ``srun`` (SLURM), ``mpirun`` (Open MPI)
or a Kubernetes indexed Job, JAX's own detection joins the processes (``--distributed``);
elsewhere pass ``--coordinator_address``, ``--num_processes`` and ``--process_id`` (or set
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID) on every host.
"""

import contextlib
import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from samplernn_jax import backend
from samplernn_jax import config as config_lib
from samplernn_jax import default_config
from samplernn_jax import distributed
from samplernn_jax import train as train_lib
from samplernn_jax.commands import cli
from samplernn_jax.corpus import demo_corpus
from samplernn_jax.listening import training_hooks

FLAGS = flags.FLAGS

# No default here: cli.run supplies it (see cli on --config).
_CONFIG = config_flags.DEFINE_config_file(
  'config',
  None,
  'Training configuration file (configs/*.py); override any field with '
  '--config.SECTION.FIELD=VALUE; --show_config lists every field and what it means.',
  lock_config=True,
)
flags.DEFINE_bool(
  'show_config', False, 'Print the resolved config, every field with its meaning, and exit.'
)
flags.DEFINE_string(
  'workdir',
  None,
  'Directory for checkpoints, logs and audio; an existing one is resumed.',
  required=True,
)
flags.DEFINE_string(
  'data_dir',
  None,
  'Directory of audio files; if absent, the demo corpus is synthesized into WORKDIR/demo_corpus.',
)
flags.DEFINE_integer(
  'resume_from',
  None,
  'Resume from this checkpoint step instead of the latest (newer checkpoints are deleted).',
)
flags.DEFINE_enum(
  'distributed',
  'auto',
  list(distributed.MODES),
  'Join other processes with jax.distributed.initialize: auto when coordinator '
  'flags are given or JAX detects a multi-process cluster launch (SLURM srun, Open '
  'MPI, Kubernetes), on, or off.',
)
flags.DEFINE_string(
  'coordinator_address',
  os.environ.get('JAX_COORDINATOR_ADDRESS'),
  'host:port of process 0, for multi-host training.',
)
flags.DEFINE_integer('num_processes', None, 'Processes in all, for multi-host training.')
flags.DEFINE_integer('process_id', None, "This process's index, for multi-host training.")
flags.DEFINE_string(
  'compilation_cache_dir',
  None,
  'Where compiled steps are kept so the next '
  'run skips compiling; default $JAX_COMPILATION_CACHE_DIR or '
  '~/.cache/samplernn_jax/jax; an empty value turns the cache off.',
)


def _env_int(name: str):
  value = os.environ.get(name)
  return int(value) if value else None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  config = config_lib.validate(cli.loaded_config(_CONFIG))
  if FLAGS.show_config:
    with contextlib.suppress(BrokenPipeError):  # Piped into head: the reader has enough.
      print(config_lib.describe_fields(config), flush=True)
    return
  backend.enable_compilation_cache(FLAGS.compilation_cache_dir)
  if config.model.dtype == 'bfloat16' and not backend.fast_bfloat16():
    logging.warning(
      '--config.model.dtype=bfloat16 on a CPU without AMX or AVX512-BF16: it '
      'trains slower than float32 here (docs/precision.md).'
    )
  print(
    distributed.initialize(
      FLAGS.distributed,
      coordinator_address=FLAGS.coordinator_address,
      num_processes=FLAGS.num_processes or _env_int('JAX_NUM_PROCESSES'),
      process_id=(FLAGS.process_id if FLAGS.process_id is not None else _env_int('JAX_PROCESS_ID')),
    ),
    flush=True,
  )
  # The data is the command's choice: without --data_dir, the demo corpus (made once).
  data_dir = FLAGS.data_dir or demo_corpus.in_workdir(FLAGS.workdir, int(config.data.sample_rate))
  train_lib.train_and_evaluate(
    config,
    FLAGS.workdir,
    data_dir,
    resume_from=FLAGS.resume_from,
    hooks=training_hooks.training_hooks(config),
  )


def run():
  """Console-script entry point."""
  # What people must act on (bad data dir or config, a diverged run, a full disk): one
  # line, not a trace.
  cli.run(
    main,
    'samplernn-train',
    (FileNotFoundError, ValueError, FloatingPointError, OSError),
    config_file=default_config.__file__,
  )


if __name__ == '__main__':
  run()
