"""The wavefront form of a stacked RNN against the layered form, and the depth it buys."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import flops
from benchmarks import scaling_lib
from benchmarks import train_step
from samplernn_jax import backend
from samplernn_jax import model as model_lib
from samplernn_jax import rnn
from tests.conftest import load_config
from tests.conftest import make_model

B, T, DIM = 3, 7, 8


def stack_loss(
  rnn_type, num_layers, *, skip_conn=False, learn_h0=False, dropout=0.0, dtype=jnp.float32
):
  """``(loss(params, form), params)``: two chained windows (TBPTT) through a stack, a loss
  that reads the outputs of both and the final carry, so every gradient path is used."""
  kw = dict(
    rnn_type=rnn_type,
    dim=DIM,
    num_layers=num_layers,
    skip_conn=skip_conn,
    learn_h0=learn_h0,
    dropout=dropout,
    dtype=dtype,
  )
  x_BxTxD = jax.random.normal(jax.random.key(1), (B, T, DIM))
  train = dropout > 0

  def run(m, x):
    carry, out1 = m(x, m.initial_carry(B), deterministic=not train)
    carry, out2 = m(0.5 * x, carry, deterministic=not train)
    return jnp.sum(out1**2) + jnp.sum(out2 * x) + sum(jnp.sum(c) for c in jax.tree.leaves(carry))

  stack = rnn.StackedRNN(**kw)
  params = stack.init(jax.random.key(0), x_BxTxD, method=run)['params']
  # Non-zero biases and h0, so every parameter's gradient is exercised.
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(3), p.shape), params)

  def loss(p, form):
    return rnn.StackedRNN(**kw, form=form).apply(
      {'params': p}, x_BxTxD, method=run, rngs={'dropout': jax.random.key(5)}
    )

  return loss, params


# The default run takes one RNN type per stack shape; the slow one takes the rest.
@pytest.mark.parametrize(
  'rnn_type,num_layers,skip_conn,learn_h0,dropout',
  [
    ('lstm', 1, False, False, 0.0),
    ('gru', 3, True, True, 0.25),
    pytest.param('gru', 1, False, False, 0.0, marks=pytest.mark.slow),
    pytest.param('gru', 2, False, False, 0.0, marks=pytest.mark.slow),
    pytest.param('lstm', 2, False, False, 0.0, marks=pytest.mark.slow),
    pytest.param('lstm', 3, True, True, 0.25, marks=pytest.mark.slow),
    *(
      pytest.param(t, *shape, marks=pytest.mark.slow)
      for t in ('gru', 'lstm')
      for shape in ((4, False, True, 0.25), (5, True, False, 0.3))
    ),
  ],
)
def test_wavefront_equals_layered_forward_and_gradients(
  rnn_type, num_layers, skip_conn, learn_h0, dropout
):
  loss, params = stack_loss(
    rnn_type, num_layers, skip_conn=skip_conn, learn_h0=learn_h0, dropout=dropout
  )
  grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
  want, want_grads = grad(params, 'layered')
  got, got_grads = grad(params, 'wavefront')
  np.testing.assert_allclose(got, want, rtol=1e-6)
  chex.assert_trees_all_close(got_grads, want_grads, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('rnn_type', ['gru', pytest.param('lstm', marks=pytest.mark.slow)])
def test_wavefront_equals_layered_in_bfloat16(rnn_type):
  loss, params = stack_loss(rnn_type, 3, skip_conn=True, dropout=0.2, dtype=jnp.bfloat16)
  grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
  want, want_grads = grad(params, 'layered')
  got, got_grads = grad(params, 'wavefront')
  # The same bfloat16 operands in both forms: only float32 summation order differs.
  np.testing.assert_allclose(got, want, rtol=1e-5)
  chex.assert_trees_all_close(got_grads, want_grads, rtol=1e-4, atol=1e-4)


def test_wavefront_model_logits_and_carry_equal_layered(tiny_config):
  model, params, config = make_model(
    tiny_config, rnn_type='lstm', skip_conn=True, learn_h0=True, num_rnn_layers=3
  )
  wave = model.clone(rnn_form='wavefront')
  x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 2 * 32 + 8)), jnp.int32)

  @functools.partial(jax.jit, static_argnums=0)
  def two_windows(m):
    carry = m.apply({'params': params}, 2, method=model_lib.SampleRNN.initial_carry)
    carry, logits1 = m.apply({'params': params}, x[:, :40], carry)
    return m.apply({'params': params}, x[:, 32:], carry), logits1

  chex.assert_trees_all_close(two_windows(wave), two_windows(model), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('case', ['gru_mulaw', 'lstm_linear_skip'])
def test_imported_prism_checkpoint_gives_the_same_logits_in_both_forms(case, tmp_path):
  from samplernn_jax.compat import prism  # pylint: disable=g-import-not-at-top
  from tests.conftest import prism_case  # pylint: disable=g-import-not-at-top

  d = prism_case(case)
  params, config = prism.import_checkpoint(
    str(d / 'model.ckpt-1'), str(d / 'prism.config.json'), str(tmp_path / 'run'), step=1
  )
  ref = np.load(d / 'reference.npz')
  x1 = ref['x1'][..., 0]
  for form in ('layered', 'wavefront'):
    config.model.rnn_form = form
    model = model_lib.from_config(config.model)
    assert model.rnn_form == form
    carry = model.apply({'params': params}, x1.shape[0], method=model_lib.SampleRNN.initial_carry)
    _, logits = jax.jit(model.apply)({'params': params}, x1, carry)
    err = np.linalg.norm(logits - ref['logits1']) / np.linalg.norm(ref['logits1'])
    assert err < 1e-4, (form, err)


def test_auto_form_per_backend():
  assert backend.rnn_form('auto', 'gpu') == 'wavefront'
  assert backend.rnn_form('auto', 'cuda') == 'wavefront'
  assert backend.rnn_form('auto', 'cpu') in ('layered', 'wavefront')
  assert backend.rnn_form('layered', 'gpu') == 'layered'
  assert backend.rnn_form('wavefront', 'cpu') == 'wavefront'


def test_unknown_form_is_refused_with_the_choices(tiny_config):
  from samplernn_jax import config as config_lib  # pylint: disable=g-import-not-at-top

  tiny_config.model.rnn_form = 'diagonal'
  with pytest.raises(ValueError, match=r"rnn_form='diagonal'.*'layered', 'wavefront'"):
    config_lib.validate(tiny_config)


def train_step_figures(config) -> dict:
  """The compiled train step's depth (XLA:CPU's row loop left out) and matmul FLOPs."""
  compiled = scaling_lib.compile_train_step(config, jax.devices()[:1])
  return train_step.program_figures(compiled.as_text())


@pytest.mark.parametrize('form,depth', [('layered', 2 * 2 * (4 + 16)), ('wavefront', 2 * (5 + 17))])
def test_tiny_train_step_depth(tiny_config, form, depth):
  # Tiers of 4 and 16 frames, 2 layers, forward and backward.
  tiny_config.model.rnn_form = form
  assert train_step_figures(tiny_config)['depth'] == depth


@pytest.mark.slow
def test_default_train_step_wavefront_depth_is_at_most_180_for_its_ramp_flops():
  config = load_config('default')
  config.model.rnn_form = 'wavefront'
  figures = train_step_figures(config)
  # Tiers of 64 and 16 frames, 4 layers: (64 + 3 + 16 + 3) forward, as many backward.
  assert figures['depth'] == 172 <= 180
  # Paid for with the ramp's FLOPs: 2.7% more than the layered step's 1.8627e12.
  want = flops.train_flops_per_step(
    config.model, 64, 1024, form='implemented', rnn_form='wavefront'
  )
  assert figures['flops_per_step_compiled'] == pytest.approx(want, rel=1e-3)
  assert want / flops.train_flops_per_step(
    config.model, 64, 1024, form='implemented', rnn_form='layered'
  ) == pytest.approx(1.027, abs=1e-3)
