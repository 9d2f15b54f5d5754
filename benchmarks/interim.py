"""TEMPORARY stand-ins for APIs that parallel branches are writing; delete when they land.

Each function here has the signature of the one it stands in for, and ``run.py`` imports
the real one first, so swapping is deleting this file's entry:

=============================  =========================================  ==========
here                           real one                                   branch
=============================  =========================================  ==========
``benchmark_train_step``       ``benchmarks.train_step``                  perf
``measure_pipeline``           ``benchmarks.input_pipeline``              data
``synthesize``                 ``samplernn_jax.demo_corpus.synthesize``   data
=============================  =========================================  ==========

They are written plainly (one jitted step, a numpy reader) so
today's numbers are honest, but they are not the project's optimized code paths.
"""

import functools
import glob
import json
import os
import time
from typing import Dict

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import soundfile

from samplernn_jax import metrics as metrics_lib
from samplernn_jax import model as model_lib
from samplernn_jax import quantization

# ---------------------------------------------------------------------------------------
# Training step (stands in for benchmarks.train_step.benchmark_train_step, branch perf)
# ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _compiled_train_step(config_json: str):
  """Initial state, batch and compiled step for a config; cached so A/B rounds reuse it."""
  config = ml_collections.ConfigDict(json.loads(config_json))
  model = model_lib.from_config(config.model)
  batch_size, seq_len = config.train.batch_size, config.data.seq_len
  big = model.big_frame_size
  params = model_lib.init_params(model, jax.random.key(config.train.seed))
  tx = optax.chain(optax.clip_by_global_norm(config.train.clip_norm),
                   optax.adam(config.train.learning_rate, eps=config.train.adam_eps))
  opt_state = tx.init(params)

  def initial_carry(p):
    return model.apply({'params': p}, batch_size, method=lambda m, b: m.initial_carry(b))

  def step(params, opt_state, carry, batch):
    carry = model_lib.reset_carry(initial_carry(params), carry, batch['reset'])

    def loss_fn(p):
      new_carry, logits = model.apply({'params': p}, batch['x'], carry)
      loss, metrics = metrics_lib.loss_and_metrics(logits, batch['x'][:, big:])
      return loss, (new_carry, metrics)

    (_, (carry, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, carry, metrics

  rng = np.random.default_rng(0)
  batch = {'x': jnp.asarray(rng.integers(0, config.model.q_levels,
                                         (batch_size, seq_len + big)), jnp.int32),
           'reset': jnp.zeros((batch_size,), bool)}
  carry = initial_carry(params)
  start = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=(0, 1, 2)).lower(
      params, opt_state, carry, batch).compile()
  compile_sec = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  state = {'params': params, 'opt_state': opt_state, 'carry': carry}
  return compiled, state, batch, compile_sec, float(cost.get('flops', 0.0))


def benchmark_train_step(config: ml_collections.ConfigDict, num_steps: int) -> Dict[str, float]:
  """Median seconds per train step after compilation; see benchmarks.train_step (perf)."""
  compiled, state, batch, compile_sec, flops = _compiled_train_step(config.to_json())
  times = []
  for i in range(num_steps + 1):
    start = time.perf_counter()
    state['params'], state['opt_state'], state['carry'], metrics = compiled(
        state['params'], state['opt_state'], state['carry'], batch)
    jax.block_until_ready(metrics)
    if i:  # The first run of a compiled step warms caches: not timed.
      times.append(time.perf_counter() - start)
  sec = float(np.median(times))
  samples = config.train.batch_size * config.data.seq_len
  return {'sec_per_step': sec, 'samples_per_sec': samples / sec, 'compile_sec': compile_sec,
          'flops_per_step_xla': flops}


# ---------------------------------------------------------------------------------------
# Input pipeline and corpus (stand in for benchmarks.input_pipeline and
# samplernn_jax.demo_corpus, branch data)
# ---------------------------------------------------------------------------------------


def synthesize(out_dir: str, sample_rate: int, num_files: int = 8, seconds: float = 4.0,
               seed: int = 0):
  """Writes ``num_files`` mono 16-bit wav files of random chirps and noise."""
  os.makedirs(out_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * sample_rate)) / sample_rate
  paths = []
  for i in range(num_files):
    f0, f1 = rng.uniform(80, 2000, 2)
    audio = 0.5 * np.sin(2 * np.pi * (f0 + (f1 - f0) * t / (2 * seconds)) * t)
    audio += 0.05 * rng.standard_normal(t.shape)
    path = os.path.join(out_dir, f'synth_{i:04d}.wav')
    soundfile.write(path, audio.astype(np.float32), sample_rate, subtype='PCM_16')
    paths.append(path)
  return paths


def measure_pipeline(config, data_dir: str, num_batches: int) -> float:
  """Target samples per second of ``{'x', 'reset'}`` batches read, quantized and windowed.

  Like PRiSM: ``batch_size`` files side by side, ``big_frame`` zeros in front, windows of
  ``seq_len + big_frame`` every ``seq_len`` samples. Files repeat if too few.
  """
  files = sorted(glob.glob(os.path.join(data_dir, '**', '*.wav'), recursive=True))
  if not files:
    raise ValueError(f'{data_dir}: no .wav files.')
  batch_size, seq_len = config.train.batch_size, config.data.seq_len
  big = int(config.model.frame_sizes[-1])
  m = config.model

  def batches():
    i = 0
    while True:
      group = [files[(i + k) % len(files)] for k in range(batch_size)]
      i += batch_size
      audio = [soundfile.read(p, dtype='float32', always_2d=True)[0].mean(axis=1) for p in group]
      n = min(len(a) for a in audio) // seq_len * seq_len
      levels = quantization.encode(np.stack([a[:n] for a in audio]), m.q_type, m.q_levels)
      levels = np.concatenate([np.zeros((batch_size, big), np.int32),
                               np.asarray(levels, np.int32)], axis=1)
      for start in range(0, n, seq_len):
        yield {'x': levels[:, start:start + seq_len + big],
               'reset': np.full((batch_size,), start == 0)}

  it = batches()
  next(it)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(it)
  return num_batches * batch_size * seq_len / (time.perf_counter() - start)
