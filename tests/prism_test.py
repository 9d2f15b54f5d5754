"""Exact parity with PRiSM SampleRNN (TF2) on checkpoints written by its own code."""

import json

import jax
import numpy as np
import pytest

from samplernn_jax import checkpoint
from samplernn_jax import model as model_lib
from samplernn_jax import workdir as workdir_lib
from samplernn_jax.compat import prism
from tests.conftest import prism_case

CASES = ['gru_mulaw', 'lstm_linear_skip']


def rel_l2(a, b):
  return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


@pytest.mark.parametrize('case', CASES)
def test_import_matches_reference_logits(case, tmp_path):
  d = prism_case(case)
  params, config = prism.import_checkpoint(
    str(d / 'model.ckpt-1'), str(d / 'prism.config.json'), str(tmp_path / 'run'), step=1
  )
  ref = np.load(d / 'reference.npz')
  # Through the written Orbax checkpoint, as generation and training will read it.
  params, config, step = checkpoint.restore_params(str(tmp_path / 'run'))
  assert step == 1
  model = model_lib.from_config(config.model)
  x1, x2 = ref['x1'][..., 0], ref['x2'][..., 0]
  batch = x1.shape[0]
  apply = jax.jit(lambda p, x, c: model.apply({'params': p}, x, c))
  zeros = model.apply({'params': params}, batch, method=model_lib.SampleRNN.initial_carry)
  carry, logits1 = apply(params, x1, zeros)
  _, logits2 = apply(params, x2, carry)
  _, logits2_reset = apply(params, x2, zeros)
  assert rel_l2(logits1, ref['logits1']) < 1e-4
  assert rel_l2(logits2, ref['logits2']) < 1e-4
  assert rel_l2(logits2_reset, ref['logits2_reset']) < 1e-4
  # The carry matters: without it window 2 is measurably different.
  assert rel_l2(ref['logits2'], ref['logits2_reset']) > 1e-3


def test_config_translation():
  config = prism.load_prism_config(str(prism_case('lstm_linear_skip') / 'prism.config.json'))
  assert tuple(config.model.frame_sizes) == (2, 8)
  assert config.model.rnn_type == 'lstm' and config.model.skip_conn
  assert config.model.q_type == 'linear' and config.model.q_levels == 64
  assert config.data.seq_len == 32


def test_shape_mismatch_names_variable_and_shapes(tmp_path):
  d = prism_case('gru_mulaw')
  cfg = json.loads((d / 'prism.config.json').read_text())
  cfg['dim'] = 48
  bad = tmp_path / 'bad.json'
  bad.write_text(json.dumps(cfg))
  with pytest.raises(ValueError, match=r'frame_tier_0/input_proj/bias.*\(32,\).*\(48,\)'):
    prism.import_checkpoint(str(d / 'model.ckpt-1'), str(bad), str(tmp_path / 'run'))


def test_missing_variable_is_named(tmp_path):
  d = prism_case('gru_mulaw')
  cfg = json.loads((d / 'prism.config.json').read_text())
  cfg['num_rnn_layers'] = 3
  bad = tmp_path / 'bad.json'
  bad.write_text(json.dumps(cfg))
  with pytest.raises(ValueError, match='layer_2/cell/kernel'):
    prism.import_checkpoint(str(d / 'model.ckpt-1'), str(bad), str(tmp_path / 'run'))


def test_missing_checkpoint_is_named(tmp_path):
  d = prism_case('gru_mulaw')
  with pytest.raises(FileNotFoundError, match='nowhere/model.ckpt-3'):
    prism.import_checkpoint(
      str(tmp_path / 'nowhere/model.ckpt-3'), str(d / 'prism.config.json'), str(tmp_path / 'run')
    )


def test_a_damaged_checkpoint_is_named_once(tmp_path):
  d = prism_case('gru_mulaw')
  for suffix in ('.index', '.data-00000-of-00001'):
    (tmp_path / f'model.ckpt-1{suffix}').write_bytes((d / f'model.ckpt-1{suffix}').read_bytes())
  data = tmp_path / 'model.ckpt-1.data-00000-of-00001'
  data.write_bytes(data.read_bytes()[:1000])
  with pytest.raises(ValueError) as e:
    prism.import_checkpoint(
      str(tmp_path / 'model.ckpt-1'), str(d / 'prism.config.json'), str(tmp_path / 'run')
    )
  assert str(e.value).startswith(f'{data}: truncated')


def test_command_line_import(tmp_path):
  import subprocess
  import sys

  d = prism_case('gru_mulaw')
  out = subprocess.run(
    [
      sys.executable,
      '-c',
      'from samplernn_jax.commands import import_prism; import_prism.run()',
      f'--checkpoint={d}/model.ckpt-1',
      f'--config={d}/prism.config.json',
      f'--workdir={tmp_path}/run',
    ],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode == 0, out.stderr
  assert checkpoint.latest_step(str(tmp_path / 'run')) == 1
  assert (tmp_path / 'run' / workdir_lib.CONFIG).exists()
