"""The TensorFlow checkpoint reader: TensorFlow's own reading, and one line for a bad file."""

import ast
import json
import os
import shutil

import numpy as np
import pytest

from samplernn_jax.compat import tf_checkpoint
from tests.conftest import PRISM_FIXTURE_DIRS
from tests.conftest import REPO
from tests.conftest import prism_case

PRISM_CASES = ('gru_mulaw', 'lstm_linear_skip')
TENSORS = REPO / 'tests' / 'testdata' / 'tf_checkpoint'  # scripts/make_tf_checkpoint_fixture.py


def same_tensor(got, want) -> bool:
  """Bit for bit, and of the same type, dtype and shape."""
  if type(got) is not type(want):
    return False
  if isinstance(want, bytes):
    return got == want
  if want.dtype == object:
    return got.shape == want.shape and got.tolist() == want.tolist()
  return got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()


def test_reads_as_tensorflow_reads():
  tf = pytest.importorskip('tensorflow')
  prefixes = [
    str(root / case / 'model.ckpt-1')
    for root in PRISM_FIXTURE_DIRS
    for case in PRISM_CASES
    if (root / case).is_dir()
  ]
  for prefix in prefixes + [str(TENSORS / 'tensors')]:
    reader, want = tf_checkpoint.Reader(prefix), tf.train.load_checkpoint(prefix)
    assert reader.shapes == want.get_variable_to_shape_map(), prefix
    for name, dtype in want.get_variable_to_dtype_map().items():
      if name.startswith('partitioned/'):
        continue
      got = reader.get_tensor(name)
      assert reader.dtypes[name] == (
        np.dtype(object) if dtype == tf.string else dtype.as_numpy_dtype
      ), name
      assert same_tensor(got, want.get_tensor(name)), (prefix, name)
      assert not isinstance(got, np.ndarray) or got.flags.writeable


def test_prism_checkpoints_hold_the_keras_variables():
  count = 0
  for case in PRISM_CASES:
    d = prism_case(case)
    reader = tf_checkpoint.Reader(str(d / 'model.ckpt-1'))
    variables = {k: v for k, v in reader.shapes.items() if k.endswith('/VARIABLE_VALUE')}
    keras = json.loads((d / 'variables.json').read_text())['variables']
    # Other names (object paths, not Keras layer names), the same shapes.
    assert sorted(variables.values()) == sorted(keras.values()), case
    assert set(reader.shapes) - set(variables) == {'_CHECKPOINTABLE_OBJECT_GRAPH'}
    assert {reader.dtypes[k] for k in variables} == {np.dtype(np.float32)}
    count += len(variables)
  assert count == 66


def test_every_dtype_shard_and_scalar_as_tensorflow_read_them():
  expected = json.loads((TENSORS / 'expected.json').read_text())['tensors']
  reader = tf_checkpoint.Reader(str(TENSORS / 'tensors'))
  assert reader.shapes == {name: e['shape'] for name, e in expected.items()}
  for name, e in expected.items():
    if e.get('partitioned'):
      with pytest.raises(tf_checkpoint.FormatError, match='partitioned variable'):
        reader.get_tensor(name)
      continue
    got = reader.get_tensor(name)
    assert reader.dtypes[name].name == e['dtype'], name
    if 'strings' in e:
      strings = [bytes.fromhex(s) for s in e['strings']]
      assert (got == strings[0]) if not e['shape'] else (got.tolist() == strings), name
    else:
      assert np.shape(got) == tuple(e['shape']) and got.dtype.name == e['dtype'], name
      assert isinstance(got, np.ndarray) == bool(e['shape']), name  # Scalars as TF gives them.
      assert np.asarray(got).tobytes().hex() == e['hex'], name


@pytest.mark.parametrize('size', [0, 1, 9, 4095, 4096, 4097, 70_001])
def test_crc32c(size):
  data = np.random.default_rng(size).integers(0, 256, size, np.uint8).tobytes()
  crc = 0xFFFFFFFF  # Bit by bit, as the definition reads.
  for byte in data:
    crc ^= byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
  assert tf_checkpoint.crc32c(data) == crc ^ 0xFFFFFFFF
  assert tf_checkpoint.crc32c(b'123456789') == 0xE3069283  # The standard check value.


@pytest.fixture
def copy(tmp_path):
  """A writable copy of the gru_mulaw checkpoint; its prefix."""
  d = prism_case('gru_mulaw')
  for name in os.listdir(d):
    if name.startswith('model.ckpt-1.'):
      shutil.copy(d / name, tmp_path / name)
  return str(tmp_path / 'model.ckpt-1')


def damage(path, how):
  with open(path, 'r+b') as f:
    if how == 'truncate':
      f.truncate(os.path.getsize(path) // 2)
    else:  # Flip one bit in the middle.
      f.seek(os.path.getsize(path) // 2)
      byte = f.read(1)
      f.seek(-1, os.SEEK_CUR)
      f.write(bytes([byte[0] ^ 0x10]))


@pytest.mark.parametrize(
  'file,how,message',
  [
    ('.index', 'truncate', 'not a TensorFlow checkpoint index'),
    ('.index', 'corrupt', 'fails its checksum'),
    ('.data-00000-of-00001', 'truncate', 'truncated'),
    ('.data-00000-of-00001', 'corrupt', 'fails its checksum'),
  ],
)
def test_a_damaged_file_is_one_line_naming_it(copy, file, how, message):
  damage(copy + file, how)
  with pytest.raises(tf_checkpoint.FormatError) as e:
    tf_checkpoint.read(copy)
  assert str(e.value).startswith(copy + file + ': ') and message in str(e.value)
  assert '\n' not in str(e.value)


def test_a_missing_file_is_named(copy):
  os.remove(copy + '.data-00000-of-00001')
  with pytest.raises(FileNotFoundError, match=r'model.ckpt-1.data-00000-of-00001: missing'):
    tf_checkpoint.read(copy)
  with pytest.raises(FileNotFoundError, match=r'nowhere.index'):
    tf_checkpoint.Reader(copy + '-nowhere')


def test_the_package_never_imports_tensorflow():
  for path in (REPO / 'samplernn_jax').rglob('*.py'):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        modules = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom):
        modules = [node.module or '']
      else:
        continue
      top = {m.split('.')[0] for m in modules}
      assert not top & {'tensorflow', 'tf_keras'}, f'{path}:{node.lineno} imports {top}'
