import jax.numpy as jnp
import numpy as np
import pytest

from samplernn_jax import quantization as q

TYPES = [('mu-law', 256), ('a-law', 256), ('linear', 256), ('linear', 64)]


@pytest.mark.parametrize('q_type,levels', TYPES)
def test_round_trip_and_range(q_type, levels):
  x = np.linspace(-1, 1, 10001, dtype=np.float32)
  codes = q.encode(x, q_type, levels)
  assert codes.dtype == np.int32 and codes.min() == 0 and codes.max() == levels - 1
  assert np.all(np.diff(codes) >= 0)  # monotone
  back = q.decode(codes, q_type, levels)
  # Decoding a code and encoding it again gives the same code (the reference's linear
  # decode returns a bin's lower edge, which float rounding may put one code lower).
  again = q.encode(back, q_type, levels)
  assert np.max(np.abs(again - codes)) <= (1 if q_type == 'linear' else 0)
  # Reconstruction error is within one quantization step of the local slope.
  step = np.max(np.abs(np.diff(q.decode(np.arange(levels), q_type, levels))))
  assert np.max(np.abs(back - x)) <= step


@pytest.mark.parametrize('q_type,levels', TYPES)
def test_clamps_out_of_range(q_type, levels):
  codes = q.encode(np.array([-7.0, -1.0, 1.0, 3.0]), q_type, levels)
  assert codes[0] == codes[1] == 0 and codes[2] == codes[3] == levels - 1


@pytest.mark.parametrize('q_type,levels', TYPES)
def test_jax_matches_numpy(q_type, levels):
  x = np.random.default_rng(0).uniform(-1.2, 1.2, 1000).astype(np.float32)
  np.testing.assert_array_equal(
    np.asarray(q.encode(jnp.asarray(x), q_type, levels)), q.encode(x, q_type, levels)
  )
  codes = np.arange(levels)
  np.testing.assert_allclose(
    np.asarray(q.decode(jnp.asarray(codes), q_type, levels)),
    q.decode(codes, q_type, levels),
    atol=1e-6,
  )


def test_mu_law_matches_reference_formula():
  # PRiSM's (WaveNet's) mu-law: int((sign(x) log1p(255|x|)/log(256) + 1) / 2 * 255 + 0.5).
  x = np.array([-1.0, -0.5, -0.01, 0.0, 0.01, 0.5, 1.0], np.float32)
  expected = (np.sign(x) * np.log1p(255 * np.abs(x)) / np.log(256) + 1) / 2 * 255 + 0.5
  np.testing.assert_array_equal(q.encode(x, 'mu-law', 256), expected.astype(np.int32))
  assert q.silence_level(256) == 128
  for q_type, levels in (
    ('mu-law', 256),
    ('a-law', 256),
    ('linear', 256),
    ('linear', 64),
    ('linear', 255),
  ):
    assert int(q.encode(np.zeros(()), q_type, levels)) == q.silence_level(levels), q_type


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_raises(bad):
  with pytest.raises(ValueError, match='non-finite'):
    q.encode(np.array([0.0, bad]), 'mu-law', 256)


def test_bad_q_type_and_levels():
  with pytest.raises(ValueError, match='q_levels=256'):
    q.encode(np.zeros(3), 'mu-law', 64)
  with pytest.raises(ValueError, match='q_type'):
    q.encode(np.zeros(3), 'ulaw', 256)
