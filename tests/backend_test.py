"""Per-backend choices and the persistent compilation cache."""

import os

import jax
import pytest

from samplernn_jax import backend


def test_sampler_options_per_backend():
  cpu, gpu = backend.sampler_options('cpu'), backend.sampler_options('gpu')
  assert cpu['frame_unroll'] == 1 and gpu['frame_unroll'] >= 1
  assert set(cpu) == set(gpu) == {'sample_unroll', 'frame_unroll', 'unfolded_upper_max_batch'}
  assert backend.sampler_options('cuda') == gpu


@pytest.fixture
def restore_cache_config():
  old = (
    jax.config.jax_compilation_cache_dir,
    jax.config.jax_persistent_cache_min_compile_time_secs,
  )
  yield
  jax.config.update('jax_compilation_cache_dir', old[0])
  jax.config.update('jax_persistent_cache_min_compile_time_secs', old[1])


def test_compilation_cache_on_by_default_and_off_on_request(
  tmp_path, monkeypatch, restore_cache_config
):
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR', raising=False)
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  assert backend.enable_compilation_cache('') is None
  path = backend.enable_compilation_cache()
  assert path == str(tmp_path / 'xdg' / 'samplernn_jax' / 'jax')
  assert jax.config.jax_compilation_cache_dir == path
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', str(tmp_path / 'env'))
  assert backend.enable_compilation_cache() == str(tmp_path / 'env')
  (tmp_path / 'file').write_text('')
  assert backend.enable_compilation_cache(str(tmp_path / 'file' / 'sub')) is None


def test_generation_dtype_is_float32_where_bfloat16_would_be_slower():
  assert backend.generation_dtype('float32', 64, 'gpu') == 'float32'  # Exact parity stays.
  assert backend.generation_dtype('bfloat16', 1, 'cpu') == 'float32'  # Matrix-vector.
  assert backend.generation_dtype('bfloat16', 32, 'cpu') == (
    'bfloat16' if backend.fast_bfloat16('cpu') else 'float32'
  )
  assert backend.generation_dtype('bfloat16', 1, 'cuda') == 'bfloat16'


def test_fast_bfloat16_on_gpus_and_cpus_with_bfloat16_instructions():
  assert backend.fast_bfloat16('gpu') and backend.fast_bfloat16('cuda')
  if not os.path.exists('/proc/cpuinfo'):
    pytest.skip('no /proc/cpuinfo')
  with open('/proc/cpuinfo') as f:
    words = f.read().split()
  assert backend.fast_bfloat16('cpu') == ('amx_bf16' in words or 'avx512_bf16' in words)
