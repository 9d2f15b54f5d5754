"""``samplernn-generate``: WAV files from a checkpoint, optionally seeded, scored and plotted.

    samplernn-generate --workdir=runs/piano --output=out/piano.wav --num_seqs=8 \
        --duration=10 --temperature=0.95,0.9

The model config comes from the checkpoint. Files are named like PRiSM's generate.py:
``out/piano_e=STEP(i)_t=TEMP.wav`` (``out/piano_e=STEP_t=TEMP.wav`` for one sequence).
Clips are written chunk by chunk into a scratch folder ``.generating-*`` beside the output
and moved into place when complete (with ``--keep=K`` only the best ``K`` by score), so
an existing file is never replaced by a partial one (see ``samplernn_jax.listening.clips``).
Existing names stop the run before any work unless ``--overwrite`` is given.
"""

import os
import shlex
import sys
import urllib.parse

from absl import app
from absl import flags

from samplernn_jax import backend
from samplernn_jax.commands import cli
from samplernn_jax.listening import clips

FLAGS = flags.FLAGS

flags.DEFINE_string(
  'workdir',
  None,
  'Run folder holding checkpoints/ (training or samplernn-import-prism wrote it).',
  required=True,
)
flags.DEFINE_integer('step', None, 'Checkpoint step to load; default: the latest.')
flags.DEFINE_string(
  'output',
  'generated.wav',
  'Output path; each file is named {stem}_e={step}({i})_t={temperature}.wav like PRiSM.',
)
flags.DEFINE_integer('num_seqs', 1, 'Sequences generated side by side (one batch).')
flags.DEFINE_float('duration', 3.0, 'Seconds of audio per sequence.')
flags.DEFINE_list(
  'temperature',
  None,
  'Sampling temperatures, one per sequence; padded '
  'with the last value or truncated. Default: the run\'s '
  'config.generate.temperatures.',
)
flags.DEFINE_string(
  'seed_audio',
  None,
  'Audio to prime every tier on (any length >= one top frame); generation continues after its end.',
)
flags.DEFINE_integer(
  'seed_offset',
  0,
  'Skip this many samples (at the model sample rate) at the start of the seed audio.',
)
flags.DEFINE_integer('rng_seed', 0, 'Random seed of the sampling.')
flags.DEFINE_integer(
  'keep',
  None,
  'Write only the best KEEP sequences by score (all are scored in {stem}_e={step}_scores.json).',
)
flags.DEFINE_bool('plot', False, 'Write a waveform + spectrogram PNG beside each clip.')
flags.DEFINE_string(
  'profile_dir',
  None,
  'Write a jax.profiler trace of the generation here (open with TensorBoard or Perfetto).',
)
flags.DEFINE_integer(
  'chunk_size', None, 'Samples per compiled call; default: config.generate.chunk_size.'
)
flags.DEFINE_bool(
  'overwrite',
  False,
  'Replace clips of the same names (each only once '
  'its new version is complete); without it, existing names stop the run.',
)
flags.DEFINE_enum(
  'dtype',
  None,
  ['float32', 'bfloat16'],
  'Matmul dtype; default: the '
  'checkpoint\'s config.model.dtype. bfloat16 is used at batch sizes where this '
  'device runs it faster than float32 (docs/precision.md).',
)
flags.DEFINE_float(
  'max_silence',
  None,
  'Silence guard: a sequence silent (under config.generate.silence_dbfs) this many seconds is '
  're-primed on its own last sounding stretch and plays on; 0 turns it off (output as without '
  'it, bit for bit). Default: the run\'s config.generate.max_silence.',
)
flags.DEFINE_string(
  'compilation_cache_dir',
  None,
  'Where compiled samplers are kept so the '
  'next run skips compiling; default $JAX_COMPILATION_CACHE_DIR or '
  '~/.cache/samplernn_jax/jax; an empty value turns the cache off.',
)


def _temperatures():
  if FLAGS.temperature is None:
    return None
  try:
    return [float(t) for t in FLAGS.temperature]
  except ValueError:
    raise app.UsageError(
      f'--temperature={",".join(FLAGS.temperature)}: not a list of numbers.'
    ) from None


def _generate() -> dict:
  return clips.generate_files(
    FLAGS.workdir,
    FLAGS.output,
    step=FLAGS.step,
    num_seqs=FLAGS.num_seqs,
    duration=FLAGS.duration,
    temperatures=_temperatures(),
    seed_audio=FLAGS.seed_audio,
    seed_offset=FLAGS.seed_offset,
    rng_seed=FLAGS.rng_seed,
    keep=FLAGS.keep,
    plot=FLAGS.plot,
    profile_dir=FLAGS.profile_dir,
    chunk_size=FLAGS.chunk_size,
    overwrite=FLAGS.overwrite,
    dtype=FLAGS.dtype,
    max_silence=FLAGS.max_silence,
  )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  backend.enable_compilation_cache(FLAGS.compilation_cache_dir)
  try:
    result = _generate()
  except clips.Stopped as e:
    print(f'samplernn-generate: {e}', file=sys.stderr, flush=True)
    sys.exit(128 + e.signum)  # As a shell reports a process that a signal ended.
  for path in result['paths']:
    print(f'Generated sample output to {path}')
  print(
    f'Scores: {result["scores_path"]} ({result["x_real_time"]:.2f}x real time per '
    f'sequence, {result["samples_per_second"]:,.0f} samples/s in all, compilation '
    'included)'
  )
  if result['gallery']:
    print(f'Listen: file://{urllib.parse.quote(result["gallery"])}')
  else:  # Clips outside the run: a page of their own folder, scored against the run's data.
    folder = os.path.dirname(result['paths'][0]) if result['paths'] else '.'
    print(
      'Listen on a page: samplernn-gallery '
      f'--workdir={shlex.quote(folder)} --reference={shlex.quote(FLAGS.workdir)}'
    )


def run():
  """Console-script entry point."""
  cli.run(main, 'samplernn-generate')


if __name__ == '__main__':
  run()
