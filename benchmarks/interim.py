"""TEMPORARY stand-ins for APIs that parallel branches are writing; delete when they land.

Each function here has the signature of the one it stands in for, and ``run.py`` imports
the real one first, so swapping is deleting this file's entry:

=============================  =========================================  ==========
here                           real one                                   branch
=============================  =========================================  ==========
``benchmark_train_step``       ``benchmarks.train_step``                  perf
``generate``                   ``samplernn_jax.sampler.generate``         gen
``benchmark_generation``       ``benchmarks.generation``                  gen
``measure_pipeline``           ``benchmarks.input_pipeline``              data
``synthesize``                 ``samplernn_jax.demo_corpus.synthesize``   data
=============================  =========================================  ==========

They are written plainly (one jitted step, one jitted chunk of samples, a numpy reader) so
today's numbers are honest, but they are not the project's optimized code paths.
"""

import functools
import glob
import os
import time
from typing import Dict, Optional

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
  config = ml_collections.ConfigDict(__import__('json').loads(config_json))
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
# Generation (stands in for samplernn_jax.sampler and benchmarks.generation, branch gen)
# ---------------------------------------------------------------------------------------


def _chunk_fn(model: model_lib.SampleRNN, num_big_frames: int):
  """``(params, carry, history_BxW, temps_B, rng) -> (carry, history, samples_BxN)``.

  ``history`` holds the last ``big_frame`` samples. Frame tier ``j`` runs once per
  ``f_j`` samples; its ``R_j`` outputs condition tier ``j - 1`` (or the MLP) in a scan.
  """
  frame_sizes = model.frame_sizes

  def chunk(params, carry, history, temps, rng):
    variables = {'params': params}
    # T_k = E W_k once per chunk, not once per sample.
    tables = model.apply(variables, method=lambda m: m.sample_mlp.tap_tables())

    def mlp_logits(ids_BxF, cond_BxD):
      def head(m, h):
        h = jax.nn.relu(m.sample_mlp.hidden1(h))
        return m.sample_mlp.output_proj(jax.nn.relu(m.sample_mlp.hidden2(h)))
      conv = model_lib.tap_lookup(tables, ids_BxF, 1)[:, 0]
      return model.apply(variables, conv + cond_BxD, method=head).astype(jnp.float32)

    def tier_frame(j, cond, state):
      carry, history, rng = state
      f = frame_sizes[j]
      tier_carry, out_BxRxD = model.apply(
          variables, history[:, -f:], cond, carry[j],
          method=lambda m, x, c, k: m.frame_tiers[j](x, c, k))
      carry = carry[:j] + (tier_carry,) + carry[j + 1:]

      def body(state, cond_BxD):
        carry, history, rng = state
        if j == 0:
          rng, key = jax.random.split(rng)
          logits = mlp_logits(history[:, -frame_sizes[0]:], cond_BxD)
          new = jax.random.categorical(key, logits / temps[:, None]).astype(jnp.int32)
          history = jnp.concatenate([history[:, 1:], new[:, None]], axis=1)
          return (carry, history, rng), new[:, None]
        return tier_frame(j - 1, cond_BxD[:, None], (carry, history, rng))

      state, samples_RxBxS = jax.lax.scan(body, (carry, history, rng),
                                          jnp.swapaxes(out_BxRxD, 0, 1))
      batch = history.shape[0]
      return state, jnp.swapaxes(samples_RxBxS, 0, 1).reshape(batch, f)

    def big_frame(state, _):
      return tier_frame(len(frame_sizes) - 1, None, state)

    (carry, history, _), samples = jax.lax.scan(big_frame, (carry, history, rng), None,
                                                length=num_big_frames)
    return carry, history, jnp.swapaxes(samples, 0, 1).reshape(history.shape[0], -1)

  return jax.jit(chunk)


@functools.lru_cache(maxsize=16)
def _cached_chunk_fn(model, num_big_frames):
  return _chunk_fn(model, num_big_frames)


def generate(params, model_config, num_samples: int, temperatures, rng,
             seed_levels: Optional[np.ndarray] = None, chunk_size: int = 16384,
             callback=None) -> np.ndarray:
  """Samples ``[B, num_samples]`` int32 levels, ``B = len(temperatures)``, chunk by chunk."""
  model = model_lib.from_config(model_config)
  big = model.big_frame_size
  temps = jnp.asarray(np.asarray(temperatures, np.float32))
  batch = temps.shape[0]
  if seed_levels is None:
    seed_levels = np.full((batch, big), quantization.silence_level(
        model_config.q_type, model_config.q_levels), np.int32)
  history = jnp.asarray(seed_levels[:, -big:], jnp.int32)
  carry = model.apply({'params': params}, batch, method=lambda m, b: m.initial_carry(b))
  chunk_size = max(big, chunk_size // big * big)
  out = []
  done = 0
  while done < num_samples:
    n = min(chunk_size, -(-(num_samples - done) // big) * big)
    rng, key = jax.random.split(rng)
    carry, history, samples = _cached_chunk_fn(model, n // big)(
        params, carry, history, temps, key)
    out.append(np.asarray(samples))
    done += n
    if callback is not None:
      callback(out[-1])
  return np.concatenate(out, axis=1)[:, :num_samples]


def benchmark_generation(model_config, batch_size: int, num_samples: int) -> float:
  """Samples per second summed over the ``batch_size`` sequences, after compilation."""
  model = model_lib.from_config(model_config)
  params = model_lib.init_params(model, jax.random.key(0))
  temps = [0.95] * batch_size
  generate(params, model_config, num_samples, temps, jax.random.key(1),
           chunk_size=num_samples)  # Compiles.
  start = time.perf_counter()
  generate(params, model_config, num_samples, temps, jax.random.key(2), chunk_size=num_samples)
  return batch_size * num_samples / (time.perf_counter() - start)


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
