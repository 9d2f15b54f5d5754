"""samplernn-generate: names, files, seeding, curation, pictures and its error messages."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from samplernn_jax import backend
from samplernn_jax import checkpoint
from samplernn_jax import default_config
from samplernn_jax import model as model_lib
from samplernn_jax import workdir as workdir_lib
from samplernn_jax.listening import clips
from tests.conftest import load_config
from tests.conftest import random_params


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  config = load_config('tiny')
  config.generate.chunk_size = 48
  path = str(tmp_path_factory.mktemp('run'))
  checkpoint.save_params(path, 3, random_params(model_lib.from_config(config.model)), config)
  return path


# tiny: 8 kHz, so 0.012 s = 96 samples = two 48-sample chunks, batch 2 as in sampler_test.
DURATION = 0.012


def test_dtype_replaces_the_checkpoints_as_the_batch_size_pays(workdir, tmp_path, monkeypatch):
  dtypes = []
  real = clips.sampler_lib.Sampler

  def recording(*args, **kwargs):
    sampler = real(*args, **kwargs)
    dtypes.append(sampler.model.dtype)
    return sampler

  monkeypatch.setattr(clips.sampler_lib, 'Sampler', recording)
  for i, num_seqs in enumerate((8, 1)):
    result = clips.generate_files(
      workdir,
      str(tmp_path / f'{i}.wav'),
      num_seqs=num_seqs,
      duration=DURATION,
      dtype='bfloat16',
      progress=False,
    )
    assert len(result['paths']) == num_seqs
  # The checkpoint says float32; at batch 1 a CPU runs float32 faster (backend.py).
  assert dtypes == [jnp.dtype(backend.generation_dtype('bfloat16', n)) for n in (8, 1)]
  assert dtypes[1] == (jnp.bfloat16 if jax.default_backend() == 'gpu' else jnp.float32)


def test_prism_names_and_temperatures():
  assert clips.pad_temperatures([0.9], 3) == [0.9, 0.9, 0.9]
  assert clips.pad_temperatures([0.9, 1.0, 1.1], 2) == [0.9, 1.0]
  assert clips.output_paths('out/a.wav', 7, [0.95]) == ['out/a_e=7_t=0.95.wav']
  assert clips.output_paths('out/a.wav', 7, [0.9, 1.0]) == [
    'out/a_e=7(0)_t=0.9.wav',
    'out/a_e=7(1)_t=1.0.wav',
  ]


def test_writes_seeded_clips_scores_and_pictures(workdir, tmp_path):
  seed = tmp_path / 'seed.wav'
  t = np.arange(4410) / 44100.0
  stereo = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], 1) * 0.5
  sf.write(seed, stereo, 44100)
  result = clips.generate_files(
    workdir,
    str(tmp_path / 'out' / 'clip.wav'),
    num_seqs=2,
    duration=DURATION,
    temperatures=[0.9],
    seed_audio=str(seed),
    keep=1,
    plot=True,
    progress=False,
  )
  assert result['step'] == 3
  (kept,) = result['paths']
  audio, rate = sf.read(kept)
  assert rate == 8000 and audio.shape == (96,)
  assert sf.info(kept).subtype == 'PCM_16'
  assert os.path.exists(kept[: -len('.wav')] + '.png')
  files = sorted(os.listdir(tmp_path / 'out'))
  # Only the kept clip, its picture and the scores; the scratch folder is gone.
  assert len([f for f in files if f.endswith('.wav')]) == 1
  assert not [f for f in files if f.startswith('.generating')]
  scores = json.loads((tmp_path / 'out' / 'clip_e=3_scores.json').read_text())
  assert len(scores['sequences']) == 2
  assert {'score', 'closeness', 'silent', 'stuck', 'clipped', 'log_likelihood'} <= set(
    scores['sequences'][0]
  )
  assert scores['sequences'][scores['ranking'][0]]['kept']


@pytest.mark.parametrize(
  'kwargs,message',
  [
    (dict(num_seqs=0), 'num_seqs=0'),
    (dict(duration=-1.0), 'duration=-1.0'),
    (dict(seed_audio='nowhere/seed.wav'), 'nowhere/seed.wav: seed audio file not found'),
    (dict(step=99), 'no checkpoint at step 99'),
  ],
)
def test_errors_before_any_work(workdir, tmp_path, kwargs, message):
  with pytest.raises((ValueError, FileNotFoundError), match=message):
    clips.generate_files(workdir, str(tmp_path / 'a.wav'), progress=False, **kwargs)
  assert not os.path.exists(tmp_path / 'a_e=3_t=0.95.wav')


def test_a_checkpoint_written_before_a_config_field_existed_gets_its_default(tmp_path):
  config = load_config('tiny')
  params = random_params(model_lib.from_config(config.model))
  old = load_config('tiny')
  for section, field in (
    ('model', 'dtype'),
    ('model', 'rnn_form'),
    ('data', 'on_bad_file'),
    ('generate', 'chunk_size'),
    ('generate', 'temperatures'),
  ):
    del old[section][field]
  checkpoint.save_params(str(tmp_path / 'run'), 3, params, old)
  stored = json.loads((tmp_path / 'run' / workdir_lib.CONFIG).read_text())
  assert 'dtype' not in stored['model'] and 'chunk_size' not in stored['generate']
  _, restored, _ = checkpoint.restore_params(str(tmp_path / 'run'))
  defaults = default_config.get_config()
  assert (
    restored.model.dtype,
    restored.model.rnn_form,
    restored.data.on_bad_file,
    restored.generate.chunk_size,
    tuple(restored.generate.temperatures),
  ) == ('float32', 'auto', 'skip', defaults.generate.chunk_size, (0.95,))
  assert restored.model.dim == config.model.dim  # Stored values win.
  result = clips.generate_files(
    str(tmp_path / 'run'), str(tmp_path / 'c.wav'), duration=DURATION, progress=False
  )
  assert [os.path.basename(p) for p in result['paths']] == ['c_e=3_t=0.95.wav']


def test_bad_seeds_and_workdirs_are_named(workdir, tmp_path):
  with pytest.raises(FileNotFoundError, match='nowhere: no such workdir'):
    clips.generate_files(str(tmp_path / 'nowhere'), str(tmp_path / 'a.wav'))
  short = tmp_path / 'short.wav'
  sf.write(short, np.zeros(3), 8000)
  with pytest.raises(ValueError, match='short.wav: the seed has 3 samples.*8 samples'):
    clips.generate_files(workdir, str(tmp_path / 'a.wav'), seed_audio=str(short))
  junk = tmp_path / 'junk.wav'
  junk.write_bytes(b'not audio at all')
  with pytest.raises(ValueError, match='junk.wav: cannot decode'):
    clips.generate_files(workdir, str(tmp_path / 'a.wav'), seed_audio=str(junk))


def test_temperatures_default_to_the_run_config(workdir, tmp_path):
  # tiny's config.generate.temperatures is (0.95,), stored with the checkpoint.
  result = clips.generate_files(
    workdir, str(tmp_path / 'c.wav'), num_seqs=2, duration=DURATION, progress=False
  )
  assert [os.path.basename(p) for p in result['paths']] == [
    'c_e=3(0)_t=0.95.wav',
    'c_e=3(1)_t=0.95.wav',
  ]
