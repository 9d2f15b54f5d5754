"""The built-in corpus: deterministic plucked strings at the requested rate."""

import numpy as np
import soundfile as sf

from samplernn_jax.corpus import demo_corpus


def test_synthesize_is_deterministic_16_bit_audio(tmp_path):
  a = demo_corpus.synthesize(str(tmp_path / 'a'), sample_rate=8000, num_files=3, seconds=1.0)
  b = demo_corpus.synthesize(str(tmp_path / 'b'), sample_rate=8000, num_files=3, seconds=1.0)
  for path_a, path_b in zip(a, b):
    assert open(path_a, 'rb').read() == open(path_b, 'rb').read()
    x, rate = sf.read(path_a)
    assert rate == 8000 and len(x) == 8000 and sf.info(path_a).subtype == 'PCM_16'
    assert 0.7 < np.abs(x).max() <= 0.81 and x.std() > 0.02
  assert open(a[0], 'rb').read() != open(a[1], 'rb').read()


def test_pluck_repeats_at_its_period():
  x = demo_corpus.pluck(200.0, 8000, 8000, np.random.default_rng(0))
  autocorrelation = np.correlate(x[:2000], x[:2000], mode='full')[1999:]
  # Karplus-Strong's loop delay is the period (40 samples) plus half a sample.
  assert 20 + np.argmax(autocorrelation[20:80]) in (40, 41)
  assert abs(x.mean()) < 1e-3
