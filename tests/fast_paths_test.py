"""The hand-written backward passes and the folded first layer against plain autodiff."""

import chex
import jax
import jax.flatten_util
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest

from samplernn_jax import lookup
from samplernn_jax import metrics
from samplernn_jax import model as model_lib
from samplernn_jax import rnn


def plain_tap_lookup(tables_FxQxD, ids_BxL, num_steps):
  return sum(
    jnp.take(tables_FxQxD[k], ids_BxL[:, k : k + num_steps], axis=0)
    for k in range(tables_FxQxD.shape[0])
  )


def plain_gru_scan(xw_TxBx3D, h_BxD, w_hh, b_hh):
  def step(h, xw):
    h = rnn.gru_step(h, xw, w_hh, b_hh)
    return h, h

  return jax.lax.scan(step, h_BxD, xw_TxBx3D)


def test_tap_lookup_matches_plain_gathers():
  ids = jnp.asarray(np.random.default_rng(0).integers(0, 7, (3, 20)), jnp.int32)
  tables = jax.random.normal(jax.random.key(0), (4, 7, 5))
  chex.assert_trees_all_close(lookup.tap_lookup(tables, ids, 17), plain_tap_lookup(tables, ids, 17))
  loss = lambda f: lambda t: jnp.sum(jnp.sin(f(t, ids, 17)))
  chex.assert_trees_all_close(
    jax.grad(loss(lookup.tap_lookup))(tables), jax.grad(loss(plain_tap_lookup))(tables), atol=1e-5
  )
  check_grads(lambda t: lookup.tap_lookup(t, ids, 17), (tables,), order=1, modes=['rev'])


def test_gru_scan_matches_autodiff_of_the_step():
  ks = jax.random.split(jax.random.key(1), 4)
  t, b, d = 6, 3, 5
  args = (
    jax.random.normal(ks[0], (t, b, 3 * d)),
    jax.random.normal(ks[1], (b, d)),
    0.5 * jax.random.normal(ks[2], (d, 3 * d)),
    jax.random.normal(ks[3], (3 * d,)),
  )

  def loss(f):
    def fn(*a):
      h_last, h_all = f(*a)
      return jnp.sum(jnp.sin(h_last)) + jnp.sum(jnp.cos(h_all) * h_all)

    return fn

  chex.assert_trees_all_close(rnn.gru_scan(*args), plain_gru_scan(*args), atol=1e-6)
  chex.assert_trees_all_close(
    jax.grad(loss(rnn.gru_scan), argnums=(0, 1, 2, 3))(*args),
    jax.grad(loss(plain_gru_scan), argnums=(0, 1, 2, 3))(*args),
    atol=1e-5,
  )
  check_grads(rnn.gru_scan, args, order=1, modes=['rev'])


def plain_lstm_scan(xw_TxBx4D, carry, w_hh):
  def step(hc, xw):
    hc = rnn.lstm_step(hc, xw, w_hh)
    return hc, hc[0]

  return jax.lax.scan(step, carry, xw_TxBx4D)


def test_lstm_scan_matches_autodiff_of_the_step():
  ks = jax.random.split(jax.random.key(4), 4)
  t, b, d = 6, 3, 5
  args = (
    jax.random.normal(ks[0], (t, b, 4 * d)),
    (jax.random.normal(ks[1], (b, d)), jax.random.normal(ks[2], (b, d))),
    0.5 * jax.random.normal(ks[3], (d, 4 * d)),
  )

  def loss(f):
    def fn(*a):
      (h_last, c_last), h_all = f(*a)
      return jnp.sum(jnp.sin(h_last)) + jnp.sum(c_last**2) + jnp.sum(jnp.cos(h_all) * h_all)

    return fn

  chex.assert_trees_all_close(rnn.lstm_scan(*args), plain_lstm_scan(*args), atol=1e-6)
  chex.assert_trees_all_close(
    jax.grad(loss(rnn.lstm_scan), argnums=(0, 1, 2))(*args),
    jax.grad(loss(plain_lstm_scan), argnums=(0, 1, 2))(*args),
    atol=1e-5,
  )
  check_grads(rnn.lstm_scan, args, order=1, modes=['rev'])


def unfused_forward(m, x_BxL, carry):
  """The model as written in the paper: every tier's upsampling, then the sample MLP."""

  def fn(m, x_BxL, carry):
    _, h_BxNxD = m.frame_tiers_forward(x_BxL, carry)
    f0 = m.frame_sizes[0]
    return m.sample_mlp(
      x_BxL[:, m.big_frame_size - f0 : x_BxL.shape[1] - 1], m.frame_tiers[0].upsampled(h_BxNxD)
    )

  return fn


def model_grads(tiny_config, rnn_type, dtype, fused):
  """Logits and flat gradient of the loss, through the folded or the unfused forward."""
  tiny_config.model.rnn_type = rnn_type
  tiny_config.model.dtype = dtype
  m = model_lib.from_config(tiny_config.model)
  params = model_lib.init_params(m, jax.random.key(0))
  # Non-zero biases, so every folded term matters.
  params = jax.tree.map(lambda a: a + 0.01 * jnp.cos(jnp.arange(a.size).reshape(a.shape)), params)
  big = m.big_frame_size
  x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 32 + big)), jnp.int32)
  carry = m.apply({'params': params}, 2, method=model_lib.SampleRNN.initial_carry)

  def loss(p):
    if fused:
      logits = m.apply({'params': p}, x, carry)[1]
    else:
      logits = m.apply({'params': p}, x, carry, method=unfused_forward(m, x, carry))
    return metrics.loss_and_metrics(logits, x[:, big:])[0], logits

  (_, logits), grads = jax.value_and_grad(loss, has_aux=True)(params)
  return logits, grads


# 7-17 s a cell on 2 cores: one in the default run, the other three in the slow one.
@pytest.mark.parametrize('rnn_type', [pytest.param('gru', marks=pytest.mark.slow), 'lstm'])
def test_folded_model_matches_unfused_values_and_gradients(tiny_config, rnn_type):
  logits_a, grads_a = model_grads(tiny_config, rnn_type, 'float32', fused=True)
  logits_b, grads_b = model_grads(tiny_config, rnn_type, 'float32', fused=False)
  chex.assert_trees_all_close(logits_a, logits_b, atol=1e-5 * float(jnp.max(jnp.abs(logits_b))))
  for (path, a), b in zip(
    jax.tree_util.tree_flatten_with_path(grads_a)[0], jax.tree.leaves(grads_b)
  ):
    err = float(jnp.linalg.norm(a - b) / (jnp.linalg.norm(b) + 1e-12))
    assert err < 1e-4, (jax.tree_util.keystr(path), err)


@pytest.mark.slow
@pytest.mark.parametrize('rnn_type', ['gru', 'lstm'])
def test_folded_bfloat16_is_as_close_to_float32_as_unfused(tiny_config, rnn_type):
  """bfloat16 rounds differently along the two paths; both must stay near float32."""
  flat = lambda g: jax.flatten_util.ravel_pytree(g)[0]
  logits_ref, grads_ref = model_grads(tiny_config, rnn_type, 'float32', fused=False)
  grads_ref = flat(grads_ref)
  errors = {}
  for fused in (True, False):
    logits, grads = model_grads(tiny_config, rnn_type, 'bfloat16', fused=fused)
    errors[fused] = float(jnp.linalg.norm(flat(grads) - grads_ref) / jnp.linalg.norm(grads_ref))
    assert float(jnp.linalg.norm(logits - logits_ref) / jnp.linalg.norm(logits_ref)) < 2e-2
  assert errors[True] < 2 * errors[False] + 1e-2, errors


def test_tap_lookup_relu_matches_plain_autodiff():
  ids = jnp.asarray(np.random.default_rng(2).integers(0, 7, (3, 20)), jnp.int32)
  ks = jax.random.split(jax.random.key(3), 3)
  args = (
    jax.random.normal(ks[0], (4, 7, 5)),
    jax.random.normal(ks[1], (3, 17, 5)),
    jax.random.normal(ks[2], (5,)),
  )

  def plain(tables, addend, bias):
    return jax.nn.relu(plain_tap_lookup(tables, ids, 17) + addend + bias)

  def fast(tables, addend, bias):
    return lookup.tap_lookup_relu(tables, ids, addend, bias)

  loss = lambda f: lambda *a: jnp.sum(jnp.sin(f(*a)))
  chex.assert_trees_all_close(fast(*args), plain(*args), atol=1e-6)
  chex.assert_trees_all_close(
    jax.grad(loss(fast), argnums=(0, 1, 2))(*args),
    jax.grad(loss(plain), argnums=(0, 1, 2))(*args),
    atol=1e-5,
  )
