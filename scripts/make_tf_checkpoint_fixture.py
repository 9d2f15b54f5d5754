r"""Regenerates tests/testdata/tf_checkpoint: a TensorFlow checkpoint of every kind of tensor
that samplernn_jax/compat/tf_checkpoint.py reads, so its tests run without TensorFlow.

  pip install -e '.[reference]'
  python scripts/make_tf_checkpoint_fixture.py

Writes ``tensors`` with ``tf.train.Checkpoint`` (``tensors.index`` and three data shards: a
shard size limit of 5000 bytes splits the checkpoint), and ``expected.json``: what TensorFlow's
own reader gives for each tensor (dtype, shape, bytes in hex), or that it is partitioned
(the shard size limit cut it into slices, which tf_checkpoint.py refuses to read).
"""

import json
import os

from absl import app

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, 'tests', 'testdata', 'tf_checkpoint')
MAX_SHARD_BYTES = 5000


def variables(tf, np):
  rng = np.random.default_rng(0)
  return {
    'float32': tf.Variable(rng.standard_normal((3, 5)).astype(np.float32)),
    'float64': tf.Variable(rng.standard_normal((4,))),
    'int32': tf.Variable(rng.integers(-1000, 1000, (2, 3), dtype=np.int32)),
    'int64_scalar': tf.Variable(np.int64(-(2**40) + 7)),
    'float32_scalar': tf.Variable(np.float32(0.25)),
    'bool': tf.Variable(np.array([True, False, True])),
    'bfloat16': tf.Variable(tf.constant(rng.standard_normal((2, 2)), tf.bfloat16)),
    'float16': tf.Variable(rng.standard_normal((5,)).astype(np.float16)),
    'empty': tf.Variable(np.zeros((0, 3), np.float32)),
    'strings': tf.Variable([b'a', b'', b'xyz' * 50]),
    # Over 4096 bytes: tf_checkpoint's vectorized crc32c.
    'large': tf.Variable(rng.standard_normal((32, 33)).astype(np.float32)),
    # Over the shard size: saved in slices.
    'partitioned': tf.Variable(rng.standard_normal((1500,)).astype(np.float32)),
  }


def describe(value, np) -> dict:
  if isinstance(value, bytes):
    return {'dtype': 'object', 'shape': [], 'strings': [value.hex()]}
  value = np.asarray(value)
  if value.dtype == object:
    return {
      'dtype': 'object',
      'shape': list(value.shape),
      'strings': [s.hex() for s in value.reshape(-1)],
    }
  return {'dtype': value.dtype.name, 'shape': list(value.shape), 'hex': value.tobytes().hex()}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  os.makedirs(OUT_DIR, exist_ok=True)
  for name in os.listdir(OUT_DIR):
    if name.startswith('tensors.'):
      os.remove(os.path.join(OUT_DIR, name))
  prefix = os.path.join(OUT_DIR, 'tensors')
  policy = tf.train.experimental.MaxShardSizePolicy(max_shard_size=MAX_SHARD_BYTES)
  tf.train.Checkpoint(**variables(tf, np)).write(
    prefix, options=tf.train.CheckpointOptions(experimental_sharding_callback=policy)
  )
  reader = tf.train.load_checkpoint(prefix)
  expected = {}
  for name, shape in sorted(reader.get_variable_to_shape_map().items()):
    if name.startswith('partitioned/'):
      expected[name] = {'dtype': 'float32', 'shape': shape, 'partitioned': True}
    else:
      expected[name] = describe(reader.get_tensor(name), np)
  with open(os.path.join(OUT_DIR, 'expected.json'), 'w') as f:
    json.dump({'tensorflow': tf.__version__, 'tensors': expected}, f, indent=1)
    f.write('\n')
  print(f'Wrote {prefix}.* ({sorted(os.listdir(OUT_DIR))}).')


if __name__ == '__main__':
  app.run(main)
