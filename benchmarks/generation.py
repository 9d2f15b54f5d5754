"""Generation speed: samples per second of the jitted sampler, compile time apart.

python -m benchmarks.generation --dim=1024 --batch_size=1 --num_samples=4096
python -m benchmarks.generation --config=soundtrack --batch_size=32 --max_silence=2

With ``--max_silence`` the silence guard's cost: the sampler without and with the guard,
timed in alternation (random parameters do not fall silent, so this is what the guard costs
while it watches; a revival costs one priming of the frame tiers on its stretch).
"""

import time

from absl import app
from absl import flags
import jax
import ml_collections

from benchmarks import named_configs
from samplernn_jax import metrics
from samplernn_jax import model as model_lib
from samplernn_jax import sampler as sampler_lib
from samplernn_jax import silence_guard


def _random_params(model_config, seed=0):
  model = model_lib.from_config(model_config)
  return jax.jit(lambda k: model_lib.init_params(model, k))(jax.random.key(seed))


def benchmark_generation(
  model_config: ml_collections.ConfigDict,
  batch_size: int,
  num_samples: int,
  *,
  chunk_size: int = None,
  repeats: int = 3,
  return_details: bool = False,
  sample_rate: int = 16000,
):
  """Total samples per second (all sequences) generating ``num_samples`` per sequence.

  Random parameters. The first call (compilation + one run) is excluded; the best of
  ``repeats`` timed runs (which reuse the compiled chunk function) is reported, since on a
  shared machine the slower runs measure the neighbours. With ``return_details`` returns a
  dict with ``samples_per_second``, ``compile_seconds`` (first call minus the fastest run),
  ``all_samples_per_second``, ``x_real_time`` (at ``sample_rate``) and more.
  """
  params = _random_params(model_config)
  big = int(model_config.frame_sizes[-1])
  num_samples = -(-num_samples // big) * big
  sampler = sampler_lib.Sampler(model_config, batch_size, chunk_size or num_samples)
  folded = jax.block_until_ready(sampler.fold(params))
  temps = [0.95] * batch_size
  t0 = time.perf_counter()
  sampler.generate(params, num_samples, temps, 0, folded=folded)
  first = time.perf_counter() - t0
  runs = []
  for i in range(repeats):
    t0 = time.perf_counter()
    sampler.generate(params, num_samples, temps, i + 1, folded=folded)
    runs.append(time.perf_counter() - t0)
  run = min(runs)
  sps = batch_size * num_samples / run
  if return_details:
    return {
      'samples_per_second': sps,
      'seconds': run,
      'compile_seconds': max(0.0, first - run),
      'all_samples_per_second': [batch_size * num_samples / r for r in runs],
      'batch_size': batch_size,
      'num_samples': num_samples,
      'x_real_time': metrics.x_real_time(num_samples, run, sample_rate),
    }
  return sps


def benchmark_guard(
  config: ml_collections.ConfigDict,
  batch_size: int,
  num_samples: int,
  max_silence: float,
  *,
  rounds: int = 5,
) -> dict:
  """Samples per second (all sequences) without and with the silence guard, best of
  ``rounds`` runs each, the two alternating so both see the same neighbours."""
  params = _random_params(config.model)
  guard = silence_guard.from_config(config, max_silence)
  samplers = {
    'off': sampler_lib.Sampler(config.model, batch_size, int(config.generate.chunk_size)),
    'on': sampler_lib.Sampler(
      config.model, batch_size, int(config.generate.chunk_size), guard=guard
    ),
  }
  folded = jax.block_until_ready(samplers['off'].fold(params))
  temps = [0.95] * batch_size
  runs = {name: [] for name in samplers}
  for r in range(rounds + 1):  # Round 0 compiles.
    for name, sampler in samplers.items():
      t0 = time.perf_counter()
      sampler.generate(params, num_samples, temps, r, folded=folded)
      if r:
        runs[name].append(batch_size * num_samples / (time.perf_counter() - t0))
  best = {name: max(v) for name, v in runs.items()}
  return {'samples_per_second': best, 'all': runs, 'on_over_off': best['on'] / best['off']}


def main(argv):
  from samplernn_jax import default_config as default  # pylint: disable=g-import-not-at-top

  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  if f.config:
    config = named_configs.load_config(f.config)
  else:
    config = default.get_config()
    config.model.dim = f.dim
    config.model.rnn_type = f.rnn_type
    config.model.frame_sizes = tuple(int(size) for size in f.frame_sizes)
  config.model.dtype = f.dtype
  if f.max_silence:
    r = benchmark_guard(config, f.batch_size, f.num_samples, f.max_silence)
    sps = r['samples_per_second']
    print(
      f'batch={f.batch_size} {f.num_samples} samples: guard off {sps["off"]:.0f} samples/s, '
      f'--max_silence={f.max_silence:g} {sps["on"]:.0f} ({r["on_over_off"]:.3f} of off); '
      f'every run: {r["all"]}'
    )
    return
  r = benchmark_generation(
    config.model,
    f.batch_size,
    f.num_samples,
    return_details=True,
    sample_rate=config.data.sample_rate,
  )
  print(
    f'dim={f.dim} batch={f.batch_size} {f.rnn_type} {config.model.frame_sizes}: '
    f'{r["samples_per_second"]:.0f} samples/s total, '
    f'{r["samples_per_second"] / f.batch_size:.0f} per sequence '
    f'({r["x_real_time"]:.2f}x real time at {config.data.sample_rate} Hz), '
    f'compile {r["compile_seconds"]:.1f} s'
  )


if __name__ == '__main__':
  # Defined only when run: ``run`` imports this module's functions, and flags are global.
  flags.DEFINE_integer('dim', 1024, 'Model width.')
  flags.DEFINE_integer('batch_size', 1, 'Sequences generated side by side.')
  flags.DEFINE_integer('num_samples', 4096, 'Samples per sequence.')
  flags.DEFINE_enum('rnn_type', 'gru', ['gru', 'lstm'], 'RNN cell.')
  flags.DEFINE_list('frame_sizes', ['16', '64'], 'Frame size of each frame tier, lowest first.')
  flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Matmul dtype.')
  flags.DEFINE_string('config', None, 'A configs/NAME.py instead of the shape flags.')
  flags.DEFINE_float('max_silence', 0.0, 'Time the silence guard at this setting against off.')
  app.run(main)
