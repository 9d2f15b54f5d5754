"""The model's shapes, its scanned RNNs, window chaining and gradients."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplernn_jax import config as config_lib
from samplernn_jax import metrics
from samplernn_jax import model as model_lib
from samplernn_jax import rnn
from tests.conftest import load_config
from tests.conftest import make_model


def random_window(rng, batch, length, q):
  return jnp.asarray(np.random.default_rng(rng).integers(0, q, (batch, length)), jnp.int32)


@pytest.mark.parametrize(
  'frame_sizes,rnn_type',
  [
    ((4,), 'lstm'),
    ((2, 8), 'lstm'),
    ((2, 4, 16), 'gru'),
    pytest.param((4,), 'gru', marks=pytest.mark.slow),
    pytest.param((2, 8), 'gru', marks=pytest.mark.slow),
    pytest.param((2, 4, 16), 'lstm', marks=pytest.mark.slow),
  ],
)
def test_output_shapes(tiny_config, frame_sizes, rnn_type):
  m, params, cfg = make_model(tiny_config, init=True, frame_sizes=frame_sizes, rnn_type=rnn_type)
  seq_len, big = cfg.data.seq_len, frame_sizes[-1]
  x = random_window(0, 3, seq_len + big, 256)
  carry0 = m.apply({'params': params}, 3, method=model_lib.SampleRNN.initial_carry)
  carry, logits = m.apply({'params': params}, x, carry0)
  assert logits.shape == (3, seq_len, 256)
  chex.assert_trees_all_equal_shapes(carry, carry0)
  assert len(carry) == len(frame_sizes)
  assert {f'frame_tier_{j}' for j in range(len(frame_sizes))} | {'sample_mlp'} == set(params)


@pytest.mark.parametrize(
  'rnn_type,skip_conn',
  [
    ('gru', False),
    ('lstm', True),
    pytest.param('lstm', False, marks=pytest.mark.slow),
    pytest.param('gru', True, marks=pytest.mark.slow),
  ],
)
def test_scan_equals_step_by_step(rnn_type, skip_conn):
  stack = rnn.StackedRNN(rnn_type=rnn_type, dim=8, num_layers=3, skip_conn=skip_conn, learn_h0=True)
  x = jax.random.normal(jax.random.key(1), (2, 7, 8))
  variables = stack.init(jax.random.key(0), x, _zeros_carry(rnn_type, 3, 2, 8))
  # Make h0 non-zero so the reset state is exercised too.
  variables = jax.tree.map(lambda a: a + 0.1, variables)
  carry0 = stack.apply(variables, 2, method=rnn.StackedRNN.initial_carry)
  carry_all, out_all = stack.apply(variables, x, carry0)
  carry, outs = carry0, []
  for t in range(x.shape[1]):
    carry, out = stack.apply(variables, x[:, t : t + 1], carry)
    outs.append(out)
  chex.assert_trees_all_close(jnp.concatenate(outs, axis=1), out_all, atol=1e-5)
  chex.assert_trees_all_close(carry, carry_all, atol=1e-5)


def _zeros_carry(rnn_type, layers, batch, dim):
  z = jnp.zeros((batch, dim))
  return tuple(z if rnn_type == 'gru' else (z, z) for _ in range(layers))


@pytest.mark.parametrize(
  'frame_sizes',
  [
    (2, 4, 16),
    pytest.param((4,), marks=pytest.mark.slow),
    pytest.param((2, 8), marks=pytest.mark.slow),
  ],
)
def test_chained_windows_equal_one_long_window(tiny_config, frame_sizes):
  """Truncated BPTT: two windows with the carry passed on == one window twice as long."""
  m, params, cfg = make_model(
    tiny_config, init=True, frame_sizes=frame_sizes, rnn_type='lstm', learn_h0=True
  )
  seq_len, big = cfg.data.seq_len, frame_sizes[-1]
  x = random_window(1, 2, 2 * seq_len + big, 256)
  carry0 = m.apply({'params': params}, 2, method=model_lib.SampleRNN.initial_carry)
  _, logits_long = m.apply({'params': params}, x, carry0)
  carry, logits_a = m.apply({'params': params}, x[:, : seq_len + big], carry0)
  _, logits_b = m.apply({'params': params}, x[:, seq_len:], carry)
  chex.assert_trees_all_close(jnp.concatenate([logits_a, logits_b], 1), logits_long, atol=1e-5)


def test_reset_carry_picks_per_sequence(tiny_config):
  m, params, _ = make_model(tiny_config, init=True, learn_h0=True)
  params = jax.tree.map(lambda a: a + 0.5, params)
  init = m.apply({'params': params}, 2, method=model_lib.SampleRNN.initial_carry)
  other = jax.tree.map(lambda a: a * 0 + 7.0, init)
  mixed = model_lib.reset_carry(init, other, jnp.array([True, False]))
  for got, i, o in zip(jax.tree.leaves(mixed), jax.tree.leaves(init), jax.tree.leaves(other)):
    np.testing.assert_allclose(got[0], i[0])
    np.testing.assert_allclose(got[1], o[1])


@pytest.mark.parametrize(
  'rnn_type,skip_conn,learn_h0', [('gru', False, True), ('lstm', True, True)]
)
def test_gradients_reach_every_parameter(tiny_config, rnn_type, skip_conn, learn_h0):
  m, params, cfg = make_model(
    tiny_config, init=True, rnn_type=rnn_type, skip_conn=skip_conn, learn_h0=learn_h0
  )
  big = cfg.model.frame_sizes[-1]
  x = random_window(2, 2, cfg.data.seq_len + big, 256)

  def loss_fn(p):
    carry = m.apply({'params': p}, 2, method=model_lib.SampleRNN.initial_carry)
    _, logits = m.apply({'params': p}, x, carry)
    return metrics.loss_and_metrics(logits, x[:, big:])[0]

  grads = jax.grad(loss_fn)(params)
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    assert float(jnp.max(jnp.abs(g))) > 0, jax.tree_util.keystr(path)


def test_dropout_is_active_only_in_training(tiny_config):
  m, params, cfg = make_model(tiny_config, init=True, rnn_dropout=0.5)
  x = random_window(3, 2, cfg.data.seq_len + cfg.model.frame_sizes[-1], 256)
  carry = m.apply({'params': params}, 2, method=model_lib.SampleRNN.initial_carry)
  _, a = m.apply({'params': params}, x, carry)
  _, b = m.apply({'params': params}, x, carry)
  _, c = m.apply(
    {'params': params}, x, carry, deterministic=False, rngs={'dropout': jax.random.key(1)}
  )
  np.testing.assert_array_equal(a, b)
  assert float(jnp.max(jnp.abs(a - c))) > 1e-4


def test_metrics_units():
  logits = jnp.log(jnp.full((1, 4, 4), 0.25))
  loss, ms = metrics.loss_and_metrics(logits, jnp.zeros((1, 4), jnp.int32))
  np.testing.assert_allclose(ms['bits_per_sample'], 2.0, rtol=1e-6)
  np.testing.assert_allclose(loss, np.log(4), rtol=1e-6)


@pytest.mark.parametrize(
  'field,value,message',
  [
    ('frame_sizes', (8, 4), 'ascending'),
    ('frame_sizes', (3, 8), 'divide'),
    ('frame_sizes', (), 'empty'),
    ('q_levels', 64, 'q_levels=256'),
    ('rnn_type', 'rnn', 'rnn_type'),
  ],
)
def test_invalid_configs_say_what_to_change(tiny_config, field, value, message):
  setattr(tiny_config.model, field, value)
  with pytest.raises(ValueError, match=message):
    config_lib.validate(tiny_config)


def test_seq_len_must_be_a_multiple_of_the_top_frame(tiny_config):
  tiny_config.data.seq_len = 30
  with pytest.raises(ValueError, match='multiple of the top frame size 8; e.g. 32'):
    config_lib.validate(tiny_config)


@pytest.mark.parametrize('name', ['default', 'two_tier', 'iclr2017', 'tiny'])
def test_shipped_configs_are_valid(name):
  config_lib.validate(load_config(name))
