"""TEMPORARY stand-ins for APIs that parallel branches are writing; delete when they land.

Each function here has the signature of the one it stands in for, and ``run.py`` imports
the real one first, so swapping is deleting this file's entry:

=============================  =========================================  ==========
here                           real one                                   branch
=============================  =========================================  ==========
``benchmark_train_step``       ``benchmarks.train_step``                  perf
=============================  =========================================  ==========

It times ``samplernn_jax.train.make_train_step`` (branch train, merged) on a fixed random
batch: the project's train step, as the training loop runs it.
"""

import functools
import json
import time
from typing import Dict

import jax
import ml_collections
import numpy as np

from samplernn_jax import train as train_lib

# ---------------------------------------------------------------------------------------
# Training step (stands in for benchmarks.train_step.benchmark_train_step, branch perf)
# ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _compiled_train_step(config_json: str):
  """State, batch and compiled ``samplernn_jax.train`` step; cached so A/B rounds reuse it."""
  config = ml_collections.ConfigDict(json.loads(config_json))
  mesh = train_lib.make_mesh()
  batch_size, seq_len = config.train.batch_size, config.data.seq_len
  big = int(config.model.frame_sizes[-1])
  state = train_lib.create_train_state(config, jax.random.key(config.train.seed))
  carry = train_lib.make_init_carry(config, mesh)(state.params)
  rng = np.random.default_rng(0)
  batch = train_lib.global_batch(mesh, {
      'x': rng.integers(0, config.model.q_levels, (batch_size, seq_len + big)).astype(np.int32),
      'reset': np.zeros((batch_size,), bool)})
  start = time.perf_counter()
  compiled = train_lib.make_train_step(config, mesh).lower(state, carry, batch).compile()
  compile_sec = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return compiled, {'state': state, 'carry': carry}, batch, compile_sec, float(
      cost.get('flops', 0.0))


def benchmark_train_step(config: ml_collections.ConfigDict, num_steps: int) -> Dict[str, float]:
  """Median seconds per train step after compilation; see benchmarks.train_step (perf)."""
  compiled, state, batch, compile_sec, flops = _compiled_train_step(config.to_json())
  times = []
  for i in range(num_steps + 1):
    start = time.perf_counter()
    state['state'], state['carry'], metrics = compiled(state['state'], state['carry'], batch)
    jax.block_until_ready(metrics)
    if i:  # The first run of a compiled step warms caches: not timed.
      times.append(time.perf_counter() - start)
  sec = float(np.median(times))
  samples = config.train.batch_size * config.data.seq_len
  return {'sec_per_step': sec, 'samples_per_sec': samples / sec, 'compile_sec': compile_sec,
          'flops_per_step_xla': flops}
