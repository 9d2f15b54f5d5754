"""What a result was measured on (bfloat16 matmul support included), and its matmul peaks."""

import datetime
import functools
import os
import platform
import time
from typing import Any, Dict

import jax
import jax.numpy as jnp


def cpu_model() -> str:
  """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown'


def _cpu_flags() -> set:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('flags'):
          return set(line.split(':', 1)[1].split())
  except OSError:
    pass
  return set()


def _version(module_name: str) -> str:
  try:
    module = __import__(module_name)
  except ImportError:
    return 'not installed'
  return getattr(module, '__version__', 'unknown')


def machine_info() -> Dict[str, Any]:
  """CPU model, cores, JAX devices and library versions, with the UTC date.

  bfloat16 matmuls are fast on a CPU only with AMX (``amx_bf16``, Sapphire Rapids and
  later); ``avx512_bf16`` has bfloat16 dot-product instructions at the float32 rate. On a
  GPU backend ``gpu_name`` names the card.
  """
  import flax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top

  flags = _cpu_flags()
  info = {
    'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
    'hostname': platform.node(),
    'cpu_model': cpu_model(),
    'cpu_cores': os.cpu_count(),
    'cpu_affinity': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None,
    'platform': platform.platform(),
    'python': platform.python_version(),
    'jax_backend': jax.default_backend(),
    'jax_devices': [str(d) for d in jax.devices()],
    'jax_device_kind': jax.devices()[0].device_kind,
    'amx_bf16': 'amx_bf16' in flags,
    'avx512_bf16': 'avx512_bf16' in flags,
    'jax': jax.__version__,
    'jaxlib': jaxlib.__version__,
    'flax': flax.__version__,
    'xla_flags': os.environ.get('XLA_FLAGS', ''),
  }
  if jax.default_backend() == 'gpu':
    info['gpu_name'] = jax.devices()[0].device_kind
  # Importing TensorFlow here would be slow and is only wanted when the reference runs.
  import sys  # pylint: disable=g-import-not-at-top

  if 'tensorflow' in sys.modules:
    from benchmarks import reference  # pylint: disable=g-import-not-at-top

    info.update(reference.tensorflow_build(sys.modules['tensorflow']))
    info['tf_keras'] = _version('tf_keras')
  else:
    info['tensorflow'] = 'not loaded'
  try:
    info['load_average_1m'] = os.getloadavg()[0]
  except OSError:
    pass
  return info


def matmul_peak_flops(size: int = 4096, repeats: int = 5, dtype=jnp.float32) -> Dict[str, float]:
  """Best-of-``repeats`` FLOP/s of one ``size`` x ``size`` matmul on the default device.

  Operands in ``dtype``, accumulated in and returned as float32, as the model's matmuls
  are. ``2 * size**3`` FLOPs per product; the first call (compilation) is not timed.
  """
  key_a, key_b = jax.random.split(jax.random.key(0))
  a = jax.random.normal(key_a, (size, size), dtype)
  b = jax.random.normal(key_b, (size, size), dtype)
  matmul = jax.jit(functools.partial(jnp.matmul, preferred_element_type=jnp.float32))
  matmul(a, b).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a, b).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return {
    'size': size,
    'repeats': repeats,
    'dtype': jnp.dtype(dtype).name,
    'best_sec': best,
    'flops_per_sec': 2.0 * size**3 / best,
  }
