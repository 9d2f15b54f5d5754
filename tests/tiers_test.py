"""Each module's one-step form (``fold`` + ``step``) against its own parallel ``__call__``.

The whole model's teacher-forcing parity is in ``sampler_test``; these pin a mismatch to the
module that has it.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplernn_jax import model as model_lib
from samplernn_jax import rnn

B, DIM, Q = 2, 8, 16


def gaussian_like(tree, seed=0, scale=0.3):
  rng = np.random.default_rng(seed)
  return jax.tree.map(
    lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), jnp.float32), tree
  )


def init(module, *args):
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args)['params'])
  return gaussian_like(shapes)


@pytest.mark.parametrize(
  'rnn_type,skip_conn', [('gru', False), ('gru', True), ('lstm', False), ('lstm', True)]
)
def test_stacked_rnn_step_equals_scan(rnn_type, skip_conn):
  stack = rnn.StackedRNN(
    rnn_type=rnn_type, dim=DIM, num_layers=2, skip_conn=skip_conn, learn_h0=True
  )
  x_BxTxD = gaussian_like(jax.ShapeDtypeStruct((B, 5, DIM), jnp.float32), seed=1)
  carry = jax.eval_shape(
    lambda: stack.init_with_output(jax.random.key(0), B, method=rnn.StackedRNN.initial_carry)[0]
  )
  carry = gaussian_like(carry, seed=2)
  params = init(stack, x_BxTxD, carry)
  want_carry, want = stack.apply({'params': params}, x_BxTxD, carry)
  layers = stack.fold(params, jnp.eye(DIM), jnp.zeros(DIM))
  outs = []
  for t in range(x_BxTxD.shape[1]):
    gates0 = x_BxTxD[:, t] @ layers[0]['w_ih'] + layers[0]['b_ih']
    carry, out = stack.step(layers, gates0, carry)
    outs.append(out)
  chex.assert_trees_all_close(jnp.stack(outs, 1), want, atol=1e-5)
  chex.assert_trees_all_close(carry, want_carry, atol=1e-5)


@pytest.mark.parametrize(
  'rnn_type,skip_conn,fold_upsampling',
  [('gru', False, True), ('lstm', True, True), ('gru', True, False)],
)
def test_frame_tier_step_equals_parallel(rnn_type, skip_conn, fold_upsampling):
  frame, ratio, frames = 4, 2, 3
  tier = model_lib.FrameTier(
    frame_size=frame,
    upsample_ratio=ratio,
    dim=DIM,
    q_levels=Q,
    rnn_type=rnn_type,
    num_layers=2,
    skip_conn=skip_conn,
  )
  samples_BxT = jnp.asarray(np.random.default_rng(3).integers(0, Q, (B, frames * frame)), jnp.int32)
  cond_BxNxD = gaussian_like(jax.ShapeDtypeStruct((B, frames, DIM), jnp.float32), seed=4)
  carry0 = gaussian_like(
    jax.eval_shape(
      lambda: tier.init_with_output(jax.random.key(0), B, method=model_lib.FrameTier.initial_carry)[
        0
      ]
    ),
    seed=7,
  )
  params = init(tier, samples_BxT, cond_BxNxD, carry0)
  want_carry, want_BxNRxD = tier.apply({'params': params}, samples_BxT, cond_BxNxD, carry0)
  # Below this tier an identity input weight: the step's output is the upsampling itself.
  folded = tier.fold(params, jnp.eye(DIM), fold_upsampling=fold_upsampling)
  w_in = tier.input_weight(params)  # The tier above folds this into what it sends.
  carry = carry0
  for n in range(frames):
    carry, cond = tier.step(
      folded, samples_BxT[:, n * frame : (n + 1) * frame], cond_BxNxD[:, n] @ w_in, carry
    )
    chex.assert_trees_all_close(
      cond.reshape(B, ratio, DIM), want_BxNRxD[:, n * ratio : (n + 1) * ratio], atol=1e-5
    )
  chex.assert_trees_all_close(carry, want_carry, atol=1e-5)


def test_sample_mlp_step_equals_parallel():
  taps, steps = 4, 6
  mlp = model_lib.SampleMLP(frame_size=taps, dim=DIM, q_levels=Q)
  ids_BxL = jnp.asarray(np.random.default_rng(5).integers(0, Q, (B, steps + taps - 1)), jnp.int32)
  cond_BxTxD = gaussian_like(jax.ShapeDtypeStruct((B, steps, DIM), jnp.float32), seed=6)
  params = init(mlp, ids_BxL, cond_BxTxD)
  want_BxTxQ = mlp.apply({'params': params}, ids_BxL, cond_BxTxD)
  folded = mlp.fold(params)
  w1 = mlp.input_weight(params)  # The lowest frame tier folds this into its upsampling.
  for t in range(steps):
    got = mlp.step(folded, ids_BxL[:, t : t + taps], cond_BxTxD[:, t] @ w1)
    chex.assert_trees_all_close(got, want_BxTxQ[:, t], atol=1e-5)
