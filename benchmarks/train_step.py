"""Seconds per training step: forward + backward + Adam over one window, jitted and donated.

Run: ``python -m benchmarks.train_step [default|small] [--batch B] [--seq_len L] [--steps N]``
(``small`` is the default config at dim 256). The step is what training runs: value and
gradient of ``metrics.loss_and_metrics``, the carry threaded to the next window, gradients
clipped to global norm 5, Adam with eps 1e-4, state donated.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from samplernn_jax import config as config_lib
from samplernn_jax import metrics
from samplernn_jax import model as model_lib


def benchmark_train_step(config, num_steps: int = 3) -> dict:
  """Times the jitted training step of ``config``; returns seconds, rates and XLA's flop count.

  ``sec_per_step`` is the median over ``num_steps`` timed steps after one untimed warm-up
  step; ``compile_sec`` is the wall time of lowering and compiling.
  """
  config_lib.validate(config)
  model = model_lib.from_config(config.model)
  batch, seq_len = int(config.train.batch_size), int(config.data.seq_len)
  big = model.big_frame_size
  params = model_lib.init_params(model, jax.random.key(int(config.train.seed)))
  tx = optax.chain(optax.clip_by_global_norm(float(config.train.clip_norm)),
                   optax.adam(float(config.train.learning_rate), eps=float(config.train.adam_eps)))
  carry = model.apply({'params': params}, batch, method=model_lib.SampleRNN.initial_carry)
  state = (params, tx.init(params), carry)

  def loss_fn(params, carry, x_BxL):
    carry, logits = model.apply({'params': params}, x_BxL, carry)
    loss, ms = metrics.loss_and_metrics(logits, x_BxL[:, big:])
    return loss, (carry, ms)

  def train_step(state, x_BxL):
    params, opt_state, carry = state
    (_, (carry, ms)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, carry, x_BxL)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state, carry), ms

  step = jax.jit(train_step, donate_argnums=0)
  rng = np.random.default_rng(0)
  windows = [jnp.asarray(rng.integers(0, config.model.q_levels, (batch, seq_len + big)), jnp.int32)
             for _ in range(num_steps + 1)]

  start = time.perf_counter()
  compiled = step.lower(state, windows[0]).compile()
  compile_sec = time.perf_counter() - start
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  flops = float((cost or {}).get('flops', float('nan')))

  state, ms = compiled(state, windows[0])  # Warm-up: first-touch allocations.
  jax.block_until_ready(ms)
  times = []
  for x in windows[1:]:
    start = time.perf_counter()
    state, ms = compiled(state, x)
    jax.block_until_ready(ms)
    times.append(time.perf_counter() - start)
  sec = statistics.median(times)
  return dict(sec_per_step=sec, samples_per_sec=batch * seq_len / sec, compile_sec=compile_sec,
              flops_per_step_xla=flops, step_times=times)


def get_config(name: str):
  from configs import default
  config = default.get_config()
  if name == 'small':
    config.model.dim = 256
  elif name != 'default':
    raise ValueError(f'unknown benchmark config {name!r}; use default or small.')
  return config


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('config', nargs='?', default='default', choices=['default', 'small'])
  parser.add_argument('--batch', type=int, default=None)
  parser.add_argument('--seq_len', type=int, default=None)
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--dtype', default=None, choices=['float32', 'bfloat16'])
  args = parser.parse_args()
  config = get_config(args.config)
  if args.batch:
    config.train.batch_size = args.batch
  if args.seq_len:
    config.data.seq_len = args.seq_len
  if args.dtype:
    config.model.dtype = args.dtype
  result = benchmark_train_step(config, args.steps)
  print(f'{args.config}: batch {config.train.batch_size} seq_len {config.data.seq_len} '
        f'dim {config.model.dim} dtype {config.model.dtype}')
  for k, v in result.items():
    print(f'  {k}: {v}')


if __name__ == '__main__':
  main()
