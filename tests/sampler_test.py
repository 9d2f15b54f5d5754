"""The sampler's step functions against the parallel model; determinism, temperatures, chunks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplernn_jax import model as model_lib
from samplernn_jax import quantization
from samplernn_jax import sampler as sampler_lib
from samplernn_jax.compat import prism
from tests.conftest import load_config
from tests.conftest import make_model
from tests.conftest import prism_case


def random_levels(seed, batch, length, q):
  return jnp.asarray(np.random.default_rng(seed).integers(0, q, (batch, length)), jnp.int32)


def assert_teacher_forcing_matches_model(
  m, params, model_config, num_frames=3, fold_options=(False,)
):
  big = m.big_frame_size
  x = random_levels(0, 2, (num_frames + 1) * big, m.q_levels)
  carry0 = m.apply({'params': params}, 2, method=model_lib.SampleRNN.initial_carry)
  _, want = jax.jit(lambda p, x, c: m.apply({'params': p}, x, c))(params, x, carry0)
  for fold_upper in fold_options:
    # No unrolling: the same numbers, compiled in a fraction of the time.
    sampler = sampler_lib.Sampler(
      model_config, 2, sample_unroll=1, fold_upper_upsampling=fold_upper
    )
    got = sampler.teacher_force(params, x)
    chex.assert_trees_all_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
  'frame_sizes,rnn_type,skip_conn,learn_h0',
  [
    ((4,), 'gru', False, False),
    ((4,), 'lstm', True, True),
    ((2, 8), 'gru', True, True),
    ((2, 8), 'lstm', False, False),
    ((2, 4, 16), 'gru', False, True),
    ((2, 4, 16), 'lstm', True, False),
  ],
)
def test_teacher_forcing_equals_parallel_forward(
  tiny_config, frame_sizes, rnn_type, skip_conn, learn_h0
):
  m, params, cfg = make_model(
    tiny_config, frame_sizes=frame_sizes, rnn_type=rnn_type, skip_conn=skip_conn, learn_h0=learn_h0
  )
  # Both forms of the upper tiers' upsampling (folded at large batches, apart at small).
  folds = (False, True) if len(frame_sizes) > 1 else (False,)
  assert_teacher_forcing_matches_model(m, params, cfg.model, fold_options=folds)


@pytest.mark.parametrize('case', ['gru_mulaw', 'lstm_linear_skip'])
def test_teacher_forcing_on_imported_prism_models(case, tmp_path):
  d = prism_case(case)
  params, config = prism.import_checkpoint(
    str(d / 'model.ckpt-1'), str(d / 'prism.config.json'), str(tmp_path / 'run'), step=1
  )
  m = model_lib.from_config(config.model)
  assert_teacher_forcing_matches_model(
    m, params, config.model, num_frames=2, fold_options=(False, True)
  )


# The generation tests share one shape (batch 2, 48-sample chunks) so they share compiles.
N, CHUNK = 96, 48


@pytest.fixture(scope='module')
def gru_model():
  return make_model(load_config('tiny'), learn_h0=True)


def test_same_rng_same_output_and_chunking_does_not_matter(gru_model):
  _, params, cfg = gru_model
  sampler = sampler_lib.Sampler(cfg.model, 2, CHUNK)
  chunks = []
  a = sampler.generate(params, N, [1.0, 1.0], 7, callback=lambda c, s: chunks.append((s, c)))
  b = sampler.generate(params, N, [1.0, 1.0], jax.random.key(7))
  c = sampler.generate(params, N, [1.0, 1.0], 8)
  assert a.shape == (2, N) and a.dtype == np.int32
  np.testing.assert_array_equal(a, b)
  assert (a != c).mean() > 0.5
  assert [s for s, _ in chunks] == [0, CHUNK]
  np.testing.assert_array_equal(np.concatenate([c for _, c in chunks], axis=1), a)
  # One chunk for the whole run: the same samples (noise is keyed by absolute position).
  one_shot = sampler_lib.generate(params, cfg.model, N, [1.0, 1.0], 7, chunk_size=N)
  np.testing.assert_array_equal(one_shot, a)
  # A length that is not a whole number of big frames is trimmed, same samples.
  np.testing.assert_array_equal(sampler.generate(params, N - 5, [1.0, 1.0], 7), a[:, : N - 5])


def test_temperatures_are_per_sequence(gru_model):
  m, params, cfg = gru_model
  sampler = sampler_lib.Sampler(cfg.model, 2, CHUNK)
  levels, mean_ll = sampler.generate(params, N, [1e-4, 1.0], 3, return_log_likelihood=True)
  # Near-zero temperature is greedy decoding: every sample is the model's argmax.
  big = m.big_frame_size
  history = np.full((2, big), quantization.silence_level(m.q_levels), np.int32)
  logits = np.asarray(sampler.teacher_force(params, np.concatenate([history, levels], 1)))
  log_probs = np.asarray(jax.nn.log_softmax(logits, axis=-1))
  chosen = np.take_along_axis(log_probs, levels[..., None], -1)[..., 0]
  assert np.all(chosen[0] >= log_probs[0].max(-1) - 1e-3)
  assert np.mean(chosen[1] < log_probs[1].max(-1) - 1e-3) > 0.3
  # The accumulated log-likelihood is the model's own, of the samples drawn.
  want = chosen.mean(-1)
  np.testing.assert_allclose(mean_ll, want, rtol=1e-4, atol=1e-4)
  assert mean_ll[0] > mean_ll[1]


@pytest.mark.parametrize('seed_length', [8, 29])
def test_seed_primes_every_tier_on_the_whole_seed(gru_model, seed_length, monkeypatch):
  m, params, cfg = gru_model
  big = m.big_frame_size
  # Two-frame windows, so a long seed is primed in several chained windows.
  monkeypatch.setattr(sampler_lib.Sampler, 'PRIME_WINDOW_FRAMES', 2)
  sampler = sampler_lib.Sampler(cfg.model, 2, CHUNK)
  seed = np.asarray(random_levels(5, 1, seed_length, 256))[0]
  state = sampler.initial_state(params, seed)
  silence = quantization.silence_level(m.q_levels)
  padded = np.concatenate([np.full(-seed_length % big, silence, np.int32), seed])
  x = jnp.asarray(np.broadcast_to(padded, (2, padded.shape[0])))
  carry0 = m.apply({'params': params}, 2, method=model_lib.SampleRNN.initial_carry)
  forward = jax.jit(lambda p, x, c: m.apply({'params': p}, x, c))
  want_carry = forward(params, x, carry0)[0] if padded.shape[0] > big else carry0
  chex.assert_trees_all_close(state.rnn_carry, want_carry, atol=1e-5)
  np.testing.assert_array_equal(state.history_BxS, x[:, -big:])
  # Generating from the seed continues it: the first logits are the model's on the seed.
  levels = sampler.generate(params, N, [1e-6, 1e-6], 0, seed_levels=seed)
  with_seed = jnp.concatenate([x, jnp.asarray(levels)], axis=1)
  _, logits = forward(params, with_seed, carry0)
  log_probs = np.asarray(jax.nn.log_softmax(logits[:, -N:], axis=-1))
  chosen = np.take_along_axis(log_probs, levels[..., None], -1)[..., 0]
  assert np.all(chosen >= log_probs.max(-1) - 1e-3)


def test_bad_arguments_are_named(gru_model):
  _, params, cfg = gru_model
  sampler = sampler_lib.Sampler(cfg.model, 2, CHUNK)
  with pytest.raises(ValueError, match='one top-tier frame'):
    sampler.initial_state(params, np.zeros(3, np.int32))
  with pytest.raises(ValueError, match='3 temperatures for batch_size=2'):
    sampler.generate(params, N, [1.0, 1.0, 1.0], 0)
  with pytest.raises(ValueError, match='num_samples=0'):
    sampler.generate(params, 0, [1.0, 1.0], 0)
