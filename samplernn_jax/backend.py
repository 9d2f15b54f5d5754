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
#     1% for 14 s more compile). XLA:GPU: 1, not measured. A loop of known trip count (every
#     scan) runs its body that many times without reading the predicate back to the host
#     (WhileThunk, xla/backends/gpu/runtime/while_thunk.cc), so unrolling saves no round trip
#     there; an unrolled body launches as many kernels per frame, and compiles longer. (It was
#     2, for a predicate copy per iteration that XLA:GPU no longer makes.)
#   unfolded_upper_max_batch: up to this batch an upper tier's upsampling is not folded into
#     the tier below (fewer bytes, more flops). Batch-1 frames are bound by streaming weights
#     from memory on both kinds of device, so the same crossover is kept.
_SAMPLER = {
  'cpu': dict(sample_unroll=16, frame_unroll=1, unfolded_upper_max_batch=8),
  'gpu': dict(sample_unroll=16, frame_unroll=1, unfolded_upper_max_batch=8),
}


def _kind(backend: Optional[str]) -> str:
  """'gpu' or 'cpu': the kind of ``backend`` (default: JAX's default backend)."""
  return 'gpu' if (backend or jax.default_backend()) in ('gpu', 'cuda', 'rocm') else 'cpu'


def sampler_options(backend: Optional[str] = None) -> dict:
  """The sampler's loop shapes for ``backend`` (default: JAX's default backend)."""
  return dict(_SAMPLER[_kind(backend)])


# The sampler's matmuls all have the batch as their row count (a frame tier's step, its
# upsampling and the sample MLP all multiply [B, .] rows by a weight matrix), so choosing its
# dtype per batch size chooses it per product. A bf16 run's sampler uses bf16 from this batch
# up and float32 below it:
#   cpu: a [1, D] x [D, N] product is bound by streaming the weights, and XLA:CPU's bf16
#     matrix-vector kernels run at a fraction of float32's bandwidth (7 against 62 GB/s for
#     [1, 1024] x [1024, 3072] on an AVX512-BF16 EPYC; 1.8 against 23.5 GB/s on an AMX Xeon).
#     Measured on the EPYC, bf16 over float32 samples/s at batch 1, 2, 4, 8, 16, 32: dim 1024
#     0.93, 1.15, 1.13, 1.24, 1.41, 1.49; dim 256 0.75, 1.04, 0.91, 1.05, 1.18, 1.34. From 8
#     rows bf16 wins at both sizes.
#   gpu: bf16 halves the bytes a matrix-vector product streams and feeds tensor cores at
#     larger batches: bf16 at every batch (not measured here: no GPU was lent).
_BF16_GENERATION_MIN_BATCH = {'cpu': 8, 'gpu': 1}


def generation_dtype(dtype: str, batch_size: int, backend: Optional[str] = None) -> str:
  """The sampler's matmul dtype for a model trained with matmul dtype ``dtype``.

  float32 stays float32 (exact PRiSM parity); bfloat16 becomes float32 at batch sizes where
  float32 is faster on this backend, and on CPUs without bfloat16 instructions
  (``fast_bfloat16``), so a bf16 run never generates slower than float32.
  """
  if dtype != 'bfloat16':
    return dtype
  fast = fast_bfloat16(backend) and batch_size >= _BF16_GENERATION_MIN_BATCH[_kind(backend)]
  return 'bfloat16' if fast else 'float32'


def fast_bfloat16(backend: Optional[str] = None) -> bool:
  """Whether bfloat16 matmuls run faster than float32 ones on this device.

  True on a GPU (tensor cores) and on a CPU with bfloat16 dot-product instructions: AMX
  (``amx_bf16``: Intel Sapphire Rapids and later) or AVX512-BF16 (``avx512_bf16``: AMD Zen 4
  and later, Intel Cooper Lake). Without them XLA:CPU computes bfloat16 matmuls in float32
  between conversions, which only adds work.
  """
  if _kind(backend) == 'gpu':
    return True
  try:
    with open('/proc/cpuinfo') as f:
      flags = next((line.split() for line in f if line.startswith('flags')), [])
  except OSError:
    return False
  return 'amx_bf16' in flags or 'avx512_bf16' in flags


# How a frame tier's stacked RNN scans a window (``model.rnn_form='auto'``; see ``wavefront``):
#   gpu: 'wavefront'. Every scan iteration is a few kernel launches and a dependency, and at
#     SampleRNN's sizes ([64, 1024] x [1024, 3072] per step) an iteration is launch- and
#     latency-bound: the default train step walks 640 of them layered, 172 as a wavefront
#     (forward and backward, tiers of 64 and 16 frames, 4 layers), for 5-19% more FLOPs in the
#     recurrence. Reasoned from the compiled program's depth, not yet timed on a GPU.
#   cpu: 'layered'. Its float32 program is the one training compiled before the wavefront
#     existed (the same HLO, FLOPs and bytes at the default config). Measured on the 2-core
#     EPYC (AVX512-BF16), dim 256, `benchmarks.run --rnn_form=layered,wavefront`, 3
#     interleaved rounds under a load average of 4-7 from other jobs (so 3-5x the quiet
#     times), median s/step: float32 layered 3.64, wavefront 4.30; bfloat16 2.90 and 1.96.
#     float32 stays layered; the bfloat16 hint is unconfirmed on a quiet machine, so 'auto'
#     stays layered there too (`--config.model.rnn_form=wavefront` chooses it).
_RNN_FORM = {'cpu': 'layered', 'gpu': 'wavefront'}


def rnn_form(form: str = 'auto', backend: Optional[str] = None) -> str:
  """``form`` itself, or for ``'auto'`` the faster form on ``backend`` (default: JAX's)."""
  return _RNN_FORM[_kind(backend)] if form == 'auto' else form


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
