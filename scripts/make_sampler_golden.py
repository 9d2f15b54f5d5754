r"""Writes tests/testdata/sampler_golden.npz: what the sampler made before the silence guard.

    python scripts/make_sampler_golden.py

The tiny config with ``tests.conftest.random_params``, three sequences at three temperatures
from one stored rng seed, unseeded and seeded. ``tests/silence_guard_test.py`` checks that the
guard switched off gives these levels bit for bit. Run from the repository root, on the
commit whose output is the reference (it was b45b9fb's sampler).
"""

import os
import sys

from absl import app
import numpy as np

sys.path.insert(0, os.getcwd())  # tests.conftest, when run from the repository root.

from samplernn_jax import sampler as sampler_lib  # noqa: E402
from tests import conftest  # noqa: E402

OUT = os.path.join('tests', 'testdata', 'sampler_golden.npz')
TEMPERATURES = (0.9, 1.0, 1.1)
NUM_SAMPLES = 1024
RNG_SEED = 7


def golden() -> dict:
  _, params, config = conftest.make_model(conftest.load_config('tiny'))
  seed_BxT = np.random.default_rng(3).integers(0, 256, (len(TEMPERATURES), 40)).astype(np.int32)
  out = {}
  for name, seed in (('unseeded', None), ('seeded', seed_BxT)):
    out[name] = sampler_lib.generate(
      params,
      config.model,
      NUM_SAMPLES,
      TEMPERATURES,
      RNG_SEED,
      seed_levels=seed,
      chunk_size=int(config.generate.chunk_size),
    )
  out['seed'] = seed_BxT
  return out


def main(argv):
  del argv
  np.savez_compressed(OUT, **golden())
  print(f'Wrote {OUT}')


if __name__ == '__main__':
  app.run(main)
