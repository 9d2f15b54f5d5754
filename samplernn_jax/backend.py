"""What depends on the backend: the persistent compilation cache and per-backend loop shapes.

Every choice here was measured on XLA:CPU (``benchmarks/PERF.md``); where a GPU is expected
to want something else the reason is written beside it. The lowest tier's table lookup makes
its own per-backend choice when lowered (``lookup._lookup_relu``).
"""

import os
from typing import Optional

from absl import logging
import jax

# Sampler loop shapes per backend (``sampler.Spec``):
#   sample_unroll: steps of the per-sample loop per scan iteration. XLA:CPU: 16 measured best
#     (a small body run most often; fewer loop-control steps). On a GPU each iteration's
#     kernels are launched separately, so unrolling saves launches there too: same value.
#   frame_unroll: steps of the frame loops per iteration. XLA:CPU: 1 (unrolling gained about
#     1% for 14 s more compile). XLA:GPU ends every while-loop iteration by copying the loop
#     predicate to the host; 2 halves those round trips per frame for a longer compile.
#   unfolded_upper_max_batch: up to this batch an upper tier's upsampling is not folded into
#     the tier below (fewer bytes, more flops). Batch-1 frames are bound by streaming weights
#     from memory on both kinds of device, so the same crossover is kept.
_SAMPLER = {
    'cpu': dict(sample_unroll=16, frame_unroll=1, unfolded_upper_max_batch=8),
    'gpu': dict(sample_unroll=16, frame_unroll=2, unfolded_upper_max_batch=8),
}


def sampler_options(backend: Optional[str] = None) -> dict:
  """The sampler's loop shapes for ``backend`` (default: JAX's default backend)."""
  backend = backend or jax.default_backend()
  return dict(_SAMPLER.get('gpu' if backend in ('gpu', 'cuda', 'rocm') else 'cpu'))


def default_cache_dir() -> str:
  """``$XDG_CACHE_HOME/samplernn_jax/jax`` (``~/.cache/samplernn_jax/jax``)."""
  root = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(root, 'samplernn_jax', 'jax')


def enable_compilation_cache(cache_dir: Optional[str] = None) -> Optional[str]:
  """Keeps compiled programs on disk so the next command with the same shapes skips XLA.

  ``cache_dir``: a folder, ``''`` to leave the cache off, or None for
  ``$JAX_COMPILATION_CACHE_DIR`` if set, else ``default_cache_dir()``. Returns the folder
  in use (None when off). A folder that cannot be created leaves the cache off, with a warning.
  """
  if cache_dir == '':
    return None
  cache_dir = cache_dir or os.environ.get('JAX_COMPILATION_CACHE_DIR') or default_cache_dir()
  try:
    os.makedirs(cache_dir, exist_ok=True)
  except OSError as e:
    logging.warning('Compilation cache off: cannot create %s (%s).', cache_dir, e)
    return None
  jax.config.update('jax_compilation_cache_dir', cache_dir)
  # Only programs that took a while to compile are worth the disk and the lookup.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
  return cache_dir
