"""Seconds per training step: forward + backward + Adam over one window, jitted and donated.

Run: ``python -m benchmarks.train_step [--config=default|small] [--batch=B] [--steps=N]``
(``small`` is the default config at dim 256). The step is the one training runs
(``samplernn_jax.steps.make_train_step``): value and gradient of the loss, the carry threaded
to the next window, gradients clipped to global norm 5, Adam with eps 1e-4, state donated.
"""

import functools
import json
import statistics
import time

from absl import app
from absl import flags
import jax
import ml_collections
import numpy as np

from benchmarks import hlo
from benchmarks import named_configs
from samplernn_jax import config as config_lib
from samplernn_jax import lookup
from samplernn_jax import steps
from samplernn_jax import train_state


@functools.lru_cache(maxsize=8)
def _compiled_train_step(config_json: str):
  """State, batch and compiled ``samplernn_jax.steps`` train step; cached so A/B rounds reuse it."""
  config = ml_collections.ConfigDict(json.loads(config_json))
  mesh = steps.make_mesh()
  batch_size, seq_len = config.train.batch_size, config.data.seq_len
  big = int(config.model.frame_sizes[-1])
  state = train_state.create_train_state(config, jax.random.key(config.train.seed))
  carry = steps.make_init_carry(config, mesh)(state.params)
  rng = np.random.default_rng(0)
  batch = steps.global_batch(
    mesh,
    {
      'x': rng.integers(0, config.model.q_levels, (batch_size, seq_len + big)).astype(np.int32),
      'reset': np.zeros((batch_size,), bool),
    },
  )
  start = time.perf_counter()
  compiled = steps.make_train_step(config, mesh).lower(state, carry, batch).compile()
  compile_sec = time.perf_counter() - start
  return (
    compiled,
    {'state': state, 'carry': carry},
    batch,
    compile_sec,
    program_figures(compiled.as_text()),
  )


def program_figures(hlo_text: str) -> dict:
  """``depth`` (dependent loop iterations, XLA:CPU's row loop left out: a GPU program has
  none), how many ``loops`` that counts, and ``flops_per_step_compiled`` (matmul FLOPs, loop
  bodies times their trip counts) of a compiled train step (``benchmarks.hlo``)."""
  depth = hlo.loop_depth(hlo_text, exclude_scopes=(lookup.ROW_LOOP_SCOPE,))
  return {
    'depth': depth['depth'],
    'loops': depth['loops'],
    'flops_per_step_compiled': hlo.matmul_flops(hlo_text),
  }


def benchmark_train_step(config: ml_collections.ConfigDict, num_steps: int = 3) -> dict:
  """Times the training step that ``samplernn-train`` runs (``steps.make_train_step``).

  ``sec_per_step`` is the median over ``num_steps`` timed steps after one untimed warm-up
  step; ``compile_sec`` is the wall time of lowering and compiling (paid once per process:
  later calls with the same config reuse the compiled step); ``program_figures`` of the
  compiled step (depth, compiled FLOPs) come with them.
  """
  config_lib.validate(config)
  compiled, held, batch, compile_sec, program = _compiled_train_step(config.to_json())
  times = []
  for i in range(num_steps + 1):
    start = time.perf_counter()
    held['state'], held['carry'], ms = compiled(held['state'], held['carry'], batch)
    jax.block_until_ready(ms)
    if i:  # The first run warms caches and first-touch allocations: not timed.
      times.append(time.perf_counter() - start)
  sec = statistics.median(times)
  samples = config.train.batch_size * config.data.seq_len
  return dict(
    sec_per_step=sec,
    samples_per_sec=samples / sec,
    compile_sec=compile_sec,
    step_times=times,
    **program,
  )


def get_config(name: str):
  return named_configs.load_config(name)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  config = get_config(f.config)
  if f.batch:
    config.train.batch_size = f.batch
  if f.seq_len:
    config.data.seq_len = f.seq_len
  if f.dtype:
    config.model.dtype = f.dtype
  result = benchmark_train_step(config, f.steps)
  print(
    f'{f.config}: batch {config.train.batch_size} seq_len {config.data.seq_len} '
    f'dim {config.model.dim} dtype {config.model.dtype}'
  )
  for k, v in result.items():
    print(f'  {k}: {v}')


if __name__ == '__main__':
  # Defined only when run: ``run`` imports this module's functions, and flags are global.
  flags.DEFINE_enum('config', 'default', ['default', 'small'], 'The configs/ file to time.')
  flags.DEFINE_integer('batch', None, "Global batch (default: the config's).")
  flags.DEFINE_integer('seq_len', None, "Window length (default: the config's).")
  flags.DEFINE_integer('steps', 3, 'Timed steps after one untimed warm-up step.')
  flags.DEFINE_enum('dtype', None, ['float32', 'bfloat16'], "Matmul dtype (default: the config's).")
  app.run(main)
