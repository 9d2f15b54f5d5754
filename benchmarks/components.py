"""Seconds for forward + backward of each part of the model, to see where a step goes.

Run: ``python -m benchmarks.components [--config=default|small] [--batch=B] [--seq_len=L]``.
Parts: the whole model + loss; the frame tiers (their conditioning for the sample tier);
the sample-level MLP given that conditioning (embedding + convolution through logits + loss).
"""

import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import train_step
from samplernn_jax import metrics
from samplernn_jax import model as model_lib


def time_fn(fn, *args, repeats=3):
  compiled = jax.jit(fn).lower(*args).compile()
  jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def component_times(config, repeats=3) -> dict:
  model = model_lib.from_config(config.model)
  batch, seq_len = int(config.train.batch_size), int(config.data.seq_len)
  big, f0 = model.big_frame_size, model.frame_sizes[0]
  params = model_lib.init_params(model, jax.random.key(0))
  x = jnp.asarray(
    np.random.default_rng(0).integers(0, config.model.q_levels, (batch, seq_len + big)), jnp.int32
  )
  carry = model.apply({'params': params}, batch, method=model_lib.SampleRNN.initial_carry)

  def full(p, carry, x):
    _, logits = model.apply({'params': p}, x, carry)
    return metrics.loss_and_metrics(logits, x[:, big:])[0]

  def frame_tiers(p, carry, x):
    def fn(m, x, carry):
      _, h_BxNxD = m.frame_tiers_forward(x, carry)
      return m.frame_tiers[0].upsampled(h_BxNxD)

    cond = model.apply({'params': p}, x, carry, method=fn)
    return jnp.sum(cond * 1e-3)

  cond = jax.random.normal(jax.random.key(1), (batch, seq_len, model.dim))
  mlp = model_lib.SampleMLP(
    frame_size=f0, dim=model.dim, q_levels=model.q_levels, dtype=model.dtype
  )

  def sample_mlp(p, cond, x):
    logits = mlp.apply({'params': p}, x[:, big - f0 : x.shape[1] - 1], cond)
    return metrics.loss_and_metrics(logits, x[:, big:])[0]

  grad = lambda f: jax.grad(f, argnums=(0, 1))
  return {
    'full fwd': time_fn(full, params, carry, x, repeats=repeats),
    'full fwd+bwd': time_fn(jax.grad(full), params, carry, x, repeats=repeats),
    'frame tiers fwd+bwd': time_fn(jax.grad(frame_tiers), params, carry, x, repeats=repeats),
    'sample mlp fwd': time_fn(sample_mlp, params['sample_mlp'], cond, x, repeats=repeats),
    'sample mlp fwd+bwd': time_fn(grad(sample_mlp), params['sample_mlp'], cond, x, repeats=repeats),
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  config = train_step.get_config(f.config)
  if f.batch:
    config.train.batch_size = f.batch
  if f.seq_len:
    config.data.seq_len = f.seq_len
  print(
    f'{f.config}: batch {config.train.batch_size} seq_len {config.data.seq_len} '
    f'dim {config.model.dim}'
  )
  for k, v in component_times(config).items():
    print(f'  {k}: {v:.3f} s')


if __name__ == '__main__':
  # Defined only when run: ``run`` imports this module's functions, and flags are global.
  flags.DEFINE_enum('config', 'default', ['default', 'small'], 'The configs/ file to time.')
  flags.DEFINE_integer('batch', None, "Global batch (default: the config's).")
  flags.DEFINE_integer('seq_len', None, "Window length (default: the config's).")
  flags.DEFINE_string('only', None, 'Time only this part.')
  app.run(main)
