"""The silence guard: a model whose silence is an attractor, with and without the guard."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from samplernn_jax import checkpoint
from samplernn_jax import quantization
from samplernn_jax import sampler as sampler_lib
from samplernn_jax import silence_guard
from samplernn_jax.listening import clips
from tests.conftest import REPO
from tests.conftest import load_config
from tests.conftest import make_model

RATE = 8000  # configs/tiny.py
BIG = 8  # Its top frame.
SILENCE = quantization.silence_level(256)
# Near full scale: what the attractor plays while it sounds.
LOUD = np.r_[0:20, 236:256]


def attractor(params, leak_logit: float = -4.6):
  """The tiny model's parameters made into a model whose silence is an attractor.

  The sample MLP sees only its last input sample (the frame tiers' conditioning is zeroed):
  after silence it plays silence (logit +30 against -30); after a loud sample a loud one,
  but with ``leak_logit`` on silence against 0 on each of 40 loud levels, about 1 in 4,000
  samples at temperature 1 (half a second at 8 kHz) falls silent, and then stays silent.
  At temperature 0.3 the leak is e^(-4.6 / 0.3), never in these tests.
  """
  p = jax.tree.map(np.array, params)
  mlp = p['sample_mlp']
  mlp['embedding'][:] = np.eye(256)
  mlp['taps'][:] = 0
  mlp['taps'][-1, :, 1] = 1.0  # Unit 1: the last sample sounds.
  mlp['taps'][-1, SILENCE, 1] = 0.0
  mlp['taps'][-1, SILENCE, 0] = 1.0  # Unit 0: it was silence.
  for name in ('hidden1', 'hidden2'):
    mlp[name]['kernel'][:] = np.eye(mlp[name]['kernel'].shape[0])
    mlp[name]['bias'][:] = 0
  out = mlp['output_proj']
  out['bias'][:] = 0
  out['kernel'][:] = 0
  out['kernel'][0, :] = -30
  out['kernel'][0, SILENCE] = 30
  out['kernel'][1, :] = -30
  out['kernel'][1, LOUD] = 0
  out['kernel'][1, SILENCE] = leak_logit
  p['frame_tier_0']['upsample'][:] = 0
  return jax.tree.map(jnp.asarray, p)


@pytest.fixture(scope='module')
def model():
  _, params, config = make_model(load_config('tiny'))
  return attractor(params), config


def silent_stretches(levels_T):
  """Lengths (s) of the runs of silent top frames, as the guard measures them."""
  audio = np.asarray(quantization.decode(levels_T, 'mu-law', 256), np.float64)
  frames = audio[: audio.shape[0] // BIG * BIG].reshape(-1, BIG)
  silent = np.sqrt((frames**2).mean(1)) < 10 ** (silence_guard.DEFAULT_SILENCE_DBFS / 20)
  runs, current = [0], 0
  for s in silent:
    current = current + 1 if s else 0
    runs.append(current)
  return max(runs) * BIG / RATE, silent.mean()


def generate(model, temps, seconds, *, guard=None, dtype=None, chunk_size=2048):
  params, config = model
  events = []
  sampler = sampler_lib.Sampler(config.model, len(temps), chunk_size, dtype=dtype, guard=guard)
  out = sampler.generate(
    params,
    int(seconds * RATE),
    temps,
    0,
    seed_levels=np.full((40,), 10, np.int32),  # A loud seed: every sequence starts sounding.
    on_revival=lambda s, t, how: events.append((s, t)),
  )
  return out, events


# Primed on half a second: a revival of the whole batch then costs a few hundred steps.
GUARD_1S = silence_guard.from_seconds(1.0, RATE, BIG, 'mu-law', prime_seconds=0.5)


def test_off_is_todays_output_bit_for_bit():
  # scripts/make_sampler_golden.py wrote these with the sampler before the guard existed.
  golden = np.load(REPO / 'tests' / 'testdata' / 'sampler_golden.npz')
  _, params, config = make_model(load_config('tiny'))
  assert silence_guard.from_seconds(0, RATE, BIG, 'mu-law') is None
  config.generate.max_silence = 0
  guard = silence_guard.from_config(config)
  assert guard is None
  for name, seed in (('unseeded', None), ('seeded', golden['seed'])):
    got = sampler_lib.generate(
      params, config.model, 1024, (0.9, 1.0, 1.1), 7, seed_levels=seed, chunk_size=64, guard=guard
    )
    np.testing.assert_array_equal(got, golden[name])


@pytest.mark.parametrize('dtype', [None, pytest.param('bfloat16', marks=pytest.mark.slow)])
def test_the_attractor_stays_silent_without_the_guard_and_plays_on_with_it(model, dtype):
  temps = (1.0, 0.3, 1.0, 0.3)  # 0 and 2 fall silent; 1 and 3 never do.
  off, none = generate(model, temps, 4.0, dtype=dtype)
  on, events = generate(model, temps, 4.0, guard=GUARD_1S, dtype=dtype)
  assert not none
  for i in (0, 2):
    longest, share = silent_stretches(off[i])
    assert longest > 2.5 and share > 0.7  # Silent within the first second, and for good.
    longest, share = silent_stretches(on[i])
    # At most max_silence plus the guard's reaction: the frame it looks at.
    assert 0 < longest <= 1.0 + BIG / RATE and share < 0.9
  # Other sequences of the batch: the same values as without the guard.
  for i in (1, 3):
    np.testing.assert_array_equal(on[i], off[i])
    assert silent_stretches(on[i])[0] == 0
  # Every revival is reported, where the revived audio starts: right after 1 s of silence.
  assert {s for s, _ in events} == {0, 2}
  for sequence, start in events:
    before = on[sequence, start - GUARD_1S.max_silent_samples : start]
    assert (before == SILENCE).all()
    assert on[sequence, start] != SILENCE or on[sequence, start + 1] != SILENCE


@pytest.mark.parametrize('batch', [1, pytest.param(32, marks=pytest.mark.slow)])
def test_the_guard_works_at_batch_1_and_32(model, batch):
  temps = tuple([1.0, 0.3] * (batch // 2)) if batch > 1 else (1.0,)
  off, _ = generate(model, temps, 3.0, chunk_size=4096)
  on, events = generate(model, temps, 3.0, guard=GUARD_1S, chunk_size=4096)
  for i, t in enumerate(temps):
    if t == 1.0:
      assert silent_stretches(off[i])[0] > 1.5
      assert silent_stretches(on[i])[0] <= 1.0 + BIG / RATE
    else:
      np.testing.assert_array_equal(on[i], off[i])
  assert {s for s, _ in events} == {i for i, t in enumerate(temps) if t == 1.0}


@pytest.mark.slow
def test_chunking_does_not_change_what_the_guard_does(model):
  temps = (1.0, 0.3)
  a, events_a = generate(model, temps, 3.0, guard=GUARD_1S, chunk_size=512)
  b, events_b = generate(model, temps, 3.0, guard=GUARD_1S, chunk_size=8192)
  np.testing.assert_array_equal(a, b)
  assert events_a == events_b


@pytest.mark.parametrize('value', [-1.0, float('nan'), float('inf')])
def test_a_bad_max_silence_is_named(value):
  with pytest.raises(ValueError, match=r'--max_silence=.* must be 0 \(off\) or a positive'):
    silence_guard.from_seconds(value, RATE, BIG, 'mu-law')


def test_revivals_are_recorded_in_the_scores_file(model, tmp_path):
  params, config = model
  config = config.copy_and_resolve_references()
  config.generate.chunk_size = 2048
  config.generate.guard_prime_seconds = 0.5
  run = tmp_path / 'run'
  checkpoint.save_params(str(run), 5, params, config)
  seed = tmp_path / 'seed.wav'
  sf.write(seed, np.full(400, 0.9, np.float32), RATE)
  (tmp_path / 'out').mkdir()
  result = clips.generate_files(
    str(run),
    str(tmp_path / 'out' / 'x.wav'),
    num_seqs=2,
    duration=3.0,
    temperatures=[1.0, 0.3],
    seed_audio=str(seed),
    max_silence=1.0,
    progress=False,
  )
  stored = json.loads(open(result['scores_path']).read())
  assert stored['silence_guard']['max_silence'] == 1.0
  first, second = stored['sequences']
  assert first['revivals'] and not second['revivals']
  for r in first['revivals']:
    assert r['sequence'] == 0 and 1.0 <= r['time'] <= 3.0
    assert r['how'] in (
      're-primed on its last sounding 0.5 s',
      'restarted from the initial state (it had sounded less than 0.5 s)',
    )


@pytest.mark.parametrize('seconds', [0.0, 1.5])
def test_in_training_clips_take_the_guard_from_the_config(model, seconds, monkeypatch, tmp_path):
  params, config = model
  config = config.copy_and_resolve_references()
  config.generate.max_silence = seconds
  asked = []
  real = sampler_lib.generate
  monkeypatch.setattr(
    sampler_lib,
    'generate',
    lambda *a, guard, **k: asked.append(guard) or real(*a, guard=guard, **k),
  )
  ((path, _),) = clips.epoch_clips(params, config, str(tmp_path), 'run', 1, 0)
  assert asked == [silence_guard.from_config(config)] and path.endswith('run_e=1_t=0.95.wav')
  assert (asked[0] is None) == (seconds == 0)
