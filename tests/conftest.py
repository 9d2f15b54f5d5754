"""Shared test helpers: the fixtures folder beside the checkout, tiny configs, numerics.

Float32 matmuls run at full precision in every test and its subprocesses: GPUs would
otherwise use TF32 (10-bit mantissas) and miss the 1e-4 parity bounds. On a GPU, XLA is
also asked for deterministic reductions, so resumed runs equal uninterrupted ones.
"""

import importlib.util
import os
import pathlib

import pytest

os.environ.setdefault('JAX_DEFAULT_MATMUL_PRECISION', 'highest')
if any(importlib.util.find_spec(p) for p in ('jax_cuda12_plugin', 'jax_cuda13_plugin',
                                             'jax_rocm60_plugin')):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                             + ' --xla_gpu_deterministic_ops=true').strip()

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

jax.config.update('jax_default_matmul_precision', 'highest')

REPO = pathlib.Path(__file__).resolve().parents[1]
# In the repository (scripts/make_prism_fixtures.py writes them), so parity runs in any
# clone; the shared folder beside the checkout is the fallback for older branches.
PRISM_FIXTURE_DIRS = (REPO / 'tests' / 'testdata' / 'prism',
                      REPO.parent / 'shared' / 'fixtures' / 'prism')


def prism_case(name: str) -> pathlib.Path:
  for root in PRISM_FIXTURE_DIRS:
    if (root / name).is_dir():
      return root / name
  pytest.skip(f'PRiSM fixture {name} not found in {[str(r) for r in PRISM_FIXTURE_DIRS]}')


@pytest.fixture(scope='module')
def module_compilation_cache(tmp_path_factory):
  """One persistent compilation cache for a test module, its subprocesses included.

  Its tests compile the same tiny steps again and again (runs, resumes, workers): after the
  first, they read the cache. Use with ``pytestmark = pytest.mark.usefixtures(...)``.
  """
  cache = str(tmp_path_factory.mktemp('jax_cache'))
  old = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
  jax.config.update('jax_compilation_cache_dir', cache)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = cache
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  yield cache
  jax.config.update('jax_compilation_cache_dir', old[0])
  jax.config.update('jax_persistent_cache_min_compile_time_secs', old[1])
  os.environ.pop('JAX_COMPILATION_CACHE_DIR')
  os.environ.pop('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS')


@pytest.fixture
def tiny_config():
  from configs import tiny
  return tiny.get_config()
