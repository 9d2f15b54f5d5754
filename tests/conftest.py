"""Shared test helpers: configs by name, models with cheap parameters, PRiSM fixtures, numerics.

Test modules import what they share from here (``from tests.conftest import ...``), never
from one another.

Float32 matmuls run at full precision in every test and its subprocesses: GPUs would
otherwise use TF32 (10-bit mantissas) and miss the 1e-4 parity bounds. On a GPU, XLA is
also asked for deterministic reductions, so resumed runs equal uninterrupted ones, and each
process allocates GPU memory as it needs it: by default the first process to start JAX takes
75% of the GPU, and the training subprocesses that tests spawn beside it would run out.
"""

import importlib.util
import os
import pathlib

import ml_collections
import numpy as np
import pytest

os.environ.setdefault('JAX_DEFAULT_MATMUL_PRECISION', 'highest')
if any(
  importlib.util.find_spec(p)
  for p in ('jax_cuda12_plugin', 'jax_cuda13_plugin', 'jax_rocm60_plugin')
):
  os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '') + ' --xla_gpu_deterministic_ops=true'
  ).strip()
  os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')

# JAX is imported only now, after the environment above is set.
# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp

from samplernn_jax import config as config_lib
from samplernn_jax import model as model_lib

# pylint: enable=g-import-not-at-top,wrong-import-position

jax.config.update('jax_default_matmul_precision', 'highest')

REPO = pathlib.Path(__file__).resolve().parents[1]
# In the repository (scripts/make_prism_fixtures.py writes them), so parity runs in any
# clone; the shared folder beside the checkout is the fallback for older branches.
PRISM_FIXTURE_DIRS = (
  REPO / 'tests' / 'testdata' / 'prism',
  REPO.parent / 'shared' / 'fixtures' / 'prism',
)


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
  old = (
    jax.config.jax_compilation_cache_dir,
    jax.config.jax_persistent_cache_min_compile_time_secs,
  )
  jax.config.update('jax_compilation_cache_dir', cache)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = cache
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  yield cache
  jax.config.update('jax_compilation_cache_dir', old[0])
  jax.config.update('jax_persistent_cache_min_compile_time_secs', old[1])
  os.environ.pop('JAX_COMPILATION_CACHE_DIR')
  os.environ.pop('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS')


def load_config(name: str) -> ml_collections.ConfigDict:
  """``configs/NAME.py``'s config, loaded by path as ``--config`` loads it (``configs/`` is
  not a package)."""
  return config_lib.from_file(str(REPO / 'configs' / f'{name}.py'))


def quiet_tiny(**train) -> ml_collections.ConfigDict:
  """The tiny config for tests of the loop: no step lines, no clips; ``train`` overrides
  ``config.train`` fields."""
  config = load_config('tiny')
  config.train.log_every_steps = 0
  config.generate.max_generate_per_epoch = 0
  for k, v in train.items():
    setattr(config.train, k, v)
  return config


def synthesize_corpus(tmp_path_factory, seconds: float) -> str:
  """Ten 8 kHz demo melodies of ``seconds`` each in a fresh folder (a module fixture's)."""
  from samplernn_jax.corpus import demo_corpus  # pylint: disable=g-import-not-at-top

  path = str(tmp_path_factory.mktemp('corpus'))
  demo_corpus.synthesize(path, sample_rate=8000, num_files=10, seconds=seconds)
  return path


@pytest.fixture
def tiny_config():
  """A fresh ``configs/tiny.py`` config per test, free to change."""
  return load_config('tiny')


def random_params(model: model_lib.SampleRNN, scale: float = 0.25):
  """Gaussian parameters of the model's shapes: non-zero biases and h0 exercise every fold.

  (Cheaper than ``init_params``, whose initializers take seconds to compile.)
  """
  shapes = jax.eval_shape(lambda: model_lib.init_params(model, jax.random.key(0)))
  rng = np.random.default_rng(0)
  return jax.tree.map(
    lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), jnp.float32), shapes
  )


def make_model(config: ml_collections.ConfigDict, *, init: bool = False, **model_overrides):
  """``(model, params, config)`` for ``config`` with ``config.model`` fields overridden
  (in place) and validated. ``params``: ``random_params``, or ``init_params``' with ``init``."""
  config.model.update(model_overrides)
  config_lib.validate(config)
  model = model_lib.from_config(config.model)
  params = model_lib.init_params(model, jax.random.key(0)) if init else random_params(model)
  return model, params, config


def children(pid: int) -> list:
  """The processes whose parent is ``pid`` (read from /proc)."""
  kids = []
  for entry in os.listdir('/proc'):
    if entry.isdigit():
      try:
        with open(f'/proc/{entry}/stat') as f:
          if int(f.read().rsplit(')', 1)[1].split()[1]) == pid:
            kids.append(int(entry))
      except (OSError, IndexError, ValueError):
        pass
  return kids


def alive(pid: int) -> bool:
  """Whether ``pid`` runs (a zombie does not)."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except OSError:
    return False
