"""Reads TensorFlow's checkpoint format (a "tensor bundle") without TensorFlow.

A checkpoint prefix ``P`` (``.../model.ckpt-100``) is the files:

* ``P.index``: an SSTable (LevelDB's table format, as TensorFlow's ``table_builder`` writes
  it) mapping each tensor's name to a ``BundleEntryProto``: dtype, shape, shard, offset,
  size and the masked crc32c of its bytes. The empty key holds the ``BundleHeaderProto``
  (number of shards, byte order, format version). The file ends in a 48-byte footer: the
  block handles of the meta-index and the index block, then a magic number. The index
  block maps the last key of each data block to its handle; a block is prefix-compressed
  entries (shared length, unshared length, value length, key suffix, value) with a restart
  array at its end, and is followed by a type byte (0: uncompressed) and the masked crc32c
  of block and type.
* ``P.data-SSSSS-of-NNNNN``: the tensors' raw bytes, in the writer's byte order, back to
  back. A string tensor is the varint lengths of its elements, a masked crc32c of those
  lengths, then the bytes of each element.

Every block and every tensor is checked against its crc32c, so a corrupt or truncated file
is a ``FormatError`` naming it, never wrong numbers. Not read (each a ``FormatError``):
compressed index blocks (TensorFlow writes bundles uncompressed), big-endian bundles,
partitioned (sliced) variables, and dtypes other than the numeric ones below and strings.
"""

import os
import struct
from typing import Dict, Iterator, List, Tuple

import ml_dtypes
import numpy as np


class FormatError(ValueError):
  """A checkpoint file that is truncated, corrupt, or of a kind this reader does not read;
  the message names the file."""


# TensorFlow's DataType enum (types.proto) -> numpy, for the types a checkpoint of model
# weights holds. DT_STRING (7) is read apart.
_DTYPES = {
  1: np.dtype(np.float32),
  2: np.dtype(np.float64),
  3: np.dtype(np.int32),
  4: np.dtype(np.uint8),
  5: np.dtype(np.int16),
  6: np.dtype(np.int8),
  8: np.dtype(np.complex64),
  9: np.dtype(np.int64),
  10: np.dtype(np.bool_),
  14: np.dtype(ml_dtypes.bfloat16),
  17: np.dtype(np.uint16),
  18: np.dtype(np.complex128),
  19: np.dtype(np.float16),
  22: np.dtype(np.uint32),
  23: np.dtype(np.uint64),
}
_DT_STRING = 7
# BundleEntryProto's fields; `slices` (repeated) is there only for a partitioned variable.
_ENTRY_FIELDS = {1: 'dtype', 2: 'shape', 3: 'shard', 4: 'offset', 5: 'size', 6: 'crc', 7: 'slices'}
_BUNDLE_VERSION = 1  # TensorFlow's kTensorBundleVersion, unchanged since 2016.
_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER_SIZE = 5  # Type byte, masked crc32c.


# ----- crc32c ----------------------------------------------------------------------------

_CRC_POLY = 0x82F63B78  # Castagnoli, reflected.


def _crc_table() -> np.ndarray:
  table = np.arange(256, dtype=np.uint32)
  for _ in range(8):
    table = np.where(table & 1, (table >> 1) ^ np.uint32(_CRC_POLY), table >> 1)
  return table.astype(np.uint32)


_CRC_TABLE = _crc_table()
_CRC_TABLE_LIST = _CRC_TABLE.tolist()


def _zeros_operator(num_bytes: int) -> np.ndarray:
  """The GF(2)-linear map "append ``num_bytes`` zero bytes" on a CRC register (init 0),
  as its 32 columns (the images of 1 << j)."""
  columns = [1 << j for j in range(32)]
  for _ in range(num_bytes):
    columns = [_CRC_TABLE_LIST[c & 0xFF] ^ (c >> 8) for c in columns]
  return np.array(columns, np.uint32)


def _apply(operator: np.ndarray, registers: np.ndarray) -> np.ndarray:
  out = np.zeros_like(registers)
  for j in range(32):
    out ^= np.where((registers >> np.uint32(j)) & np.uint32(1), operator[j], np.uint32(0))
  return out


def crc32c(data) -> int:
  """The CRC-32C (Castagnoli) of ``data`` (bytes or a buffer), as TensorFlow computes it."""
  view = np.frombuffer(data, np.uint8)
  if view.size < 4096:
    crc = 0xFFFFFFFF
    for byte in view.tobytes():
      crc = _CRC_TABLE_LIST[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
  # A tensor can be tens of MB, too many bytes for a Python loop. The CRC register (init 0)
  # is linear in the data, and leading zero bytes leave it at 0: pad the front to 2^k rows
  # of `width` bytes, run all rows at once (one numpy step per column), then fold pairs of
  # rows: crc(a || b) = shift(crc(a), len(b)) ^ crc(b), shift a 32x32 GF(2) map.
  width = 1024
  rows = 1 << max(0, int(np.ceil(np.log2(-(-view.size // width)))))
  padded = np.zeros(rows * width, np.uint8)
  padded[-view.size :] = view
  # The standard initial register 0xFFFFFFFF is the same as XORing it into the first four
  # data bytes, with a register that starts at 0.
  padded[-view.size :][:4] ^= np.frombuffer(struct.pack('<I', 0xFFFFFFFF), np.uint8)
  grid = padded.reshape(rows, width)
  crcs = np.zeros(rows, np.uint32)
  for column in grid.T:
    crcs = _CRC_TABLE[(crcs ^ column) & np.uint32(0xFF)] ^ (crcs >> np.uint32(8))
  shift = _zeros_operator(width)
  while crcs.size > 1:
    crcs = _apply(shift, crcs[0::2]) ^ crcs[1::2]
    shift = _apply(shift, shift)  # Twice the length: the operator composed with itself.
  return int(crcs[0]) ^ 0xFFFFFFFF


def _unmask(masked: int) -> int:
  """The crc32c that LevelDB's and TensorFlow's ``Mask`` stored as ``masked``."""
  rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
  return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# ----- protobuf wire format --------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> Tuple[int, int]:
  """The varint at ``buf[pos:]`` and the position after it; IndexError past the end."""
  value = shift = 0
  while True:
    byte = buf[pos]
    pos += 1
    value |= (byte & 0x7F) << shift
    if not byte & 0x80:
      return value, pos
    shift += 7


def _fields(buf: bytes) -> Iterator[Tuple[int, object]]:
  """(field number, value) of a serialized message: an int, or bytes if length-delimited."""
  pos = 0
  while pos < len(buf):
    key, pos = _varint(buf, pos)
    number, wire_type = key >> 3, key & 7
    if wire_type == 0:
      value, pos = _varint(buf, pos)
    elif wire_type == 1:
      value, pos = struct.unpack_from('<Q', buf, pos)[0], pos + 8
    elif wire_type == 2:
      size, pos = _varint(buf, pos)
      value, pos = buf[pos : pos + size], pos + size
      if pos > len(buf):
        raise IndexError('field past the end')
    elif wire_type == 5:
      value, pos = struct.unpack_from('<I', buf, pos)[0], pos + 4
    else:
      raise ValueError(f'wire type {wire_type}')
    yield number, value


def _shape(buf: bytes) -> Tuple[int, ...]:
  """A TensorShapeProto's dimensions (field 2, each a Dim whose field 1 is the size)."""
  dims = []
  for number, value in _fields(buf):
    if number == 2:
      dims.append(dict(_fields(value)).get(1, 0))
  return tuple(dims)


# ----- SSTable ---------------------------------------------------------------------------


def _block(table: bytes, handle: bytes, path: str) -> bytes:
  """The contents of the block at ``handle`` (offset, size varints), checked."""
  offset, pos = _varint(handle, 0)
  size, _ = _varint(handle, pos)
  end = offset + size + _BLOCK_TRAILER_SIZE
  if end > len(table):
    raise FormatError(f'{path}: truncated (a block ends at byte {end}, the file has {len(table)}).')
  contents, kind = table[offset : offset + size], table[offset + size]
  (masked,) = struct.unpack_from('<I', table, offset + size + 1)
  if crc32c(table[offset : offset + size + 1]) != _unmask(masked):
    raise FormatError(f'{path}: the block at byte {offset} fails its checksum (a corrupt file).')
  if kind != 0:
    raise FormatError(
      f'{path}: a compressed block (type {kind}); TensorFlow writes checkpoint '
      'indexes uncompressed, this reader reads only those.'
    )
  return contents


def _block_entries(block: bytes) -> Iterator[Tuple[bytes, bytes]]:
  """(key, value) of a block, keys rebuilt from their shared prefixes."""
  (num_restarts,) = struct.unpack_from('<I', block, len(block) - 4)
  end = len(block) - 4 - 4 * num_restarts
  pos, key = 0, b''
  while pos < end:
    shared, pos = _varint(block, pos)
    unshared, pos = _varint(block, pos)
    value_size, pos = _varint(block, pos)
    key = key[:shared] + block[pos : pos + unshared]
    pos += unshared
    yield key, block[pos : pos + value_size]
    pos += value_size


def _table_entries(path: str) -> List[Tuple[bytes, bytes]]:
  """All (key, value) of the SSTable at ``path``, in key order."""
  with open(path, 'rb') as f:
    table = f.read()
  if len(table) < _FOOTER_SIZE:
    raise FormatError(
      f'{path}: truncated ({len(table)} bytes, less than the {_FOOTER_SIZE}-byte footer).'
    )
  footer = table[-_FOOTER_SIZE:]
  if struct.unpack_from('<Q', footer, _FOOTER_SIZE - 8)[0] != _TABLE_MAGIC:
    raise FormatError(
      f'{path}: not a TensorFlow checkpoint index (no table magic number at '
      'its end; truncated or another kind of file).'
    )
  try:
    _, pos = _varint(footer, 0)  # The meta-index: bundles keep nothing there.
    _, pos = _varint(footer, pos)
    index = _block(table, footer[pos:], path)
    return [
      entry
      for _, handle in _block_entries(index)
      for entry in _block_entries(_block(table, handle, path))
    ]
  except (IndexError, struct.error):
    raise FormatError(f'{path}: a malformed block (a corrupt file).') from None


# ----- The bundle ------------------------------------------------------------------------


class Reader:
  """The tensors of the TensorFlow checkpoint at ``prefix`` (``.../model.ckpt-N``).

  ``shapes`` and ``dtypes`` list every tensor by name, as TensorFlow's
  ``get_variable_to_shape_map``/``get_variable_to_dtype_map`` do; ``get_tensor`` reads one,
  bit for bit as ``tf.train.load_checkpoint(prefix).get_tensor(name)``: a writable numpy
  array (of ``bytes`` objects for strings), or for a scalar its one element.

  Raises:
    FileNotFoundError: no ``prefix.index`` (or, on reading a tensor, no data shard).
    FormatError: a truncated or corrupt file, or a kind of checkpoint not read here.
  """

  def __init__(self, prefix: str):
    self.prefix = prefix
    index_path = prefix + '.index'
    if not os.path.exists(index_path):
      raise FileNotFoundError(f'{prefix}: no TensorFlow checkpoint here (no {index_path}).')
    self._entries: Dict[str, dict] = {}
    num_shards = 1
    try:
      for key, value in _table_entries(index_path):
        if key.startswith(b'\0'):
          continue  # A slice of a partitioned variable, under a binary key TensorFlow hides.
        if key:
          entry = {'dtype': 0, 'shape': b'', 'shard': 0, 'offset': 0, 'size': 0, 'crc': 0}
          entry.update((_ENTRY_FIELDS[n], v) for n, v in _fields(value) if n in _ENTRY_FIELDS)
          entry['shape'] = _shape(entry['shape'])
          self._entries[key.decode('utf-8')] = entry
        else:
          num_shards = self._check_header(dict(_fields(value)), index_path)
    except FormatError:
      raise
    except (IndexError, ValueError, struct.error):
      raise FormatError(f'{index_path}: a malformed entry (a corrupt file).') from None
    self._num_shards = num_shards
    self.shapes = {name: list(e['shape']) for name, e in self._entries.items()}
    # None for a dtype not read here (get_tensor says which).
    self.dtypes = {
      name: np.dtype(object) if e['dtype'] == _DT_STRING else _DTYPES.get(e['dtype'])
      for name, e in self._entries.items()
    }

  @staticmethod
  def _check_header(header: dict, index_path: str) -> int:
    """The number of shards that a BundleHeaderProto promises, if this reader reads it."""
    if header.get(2, 0) != 0:
      raise FormatError(
        f'{index_path}: a big-endian checkpoint; this reader reads little-endian ones only.'
      )
    min_consumer = dict(_fields(header.get(3, b''))).get(2, 0)
    if min_consumer > _BUNDLE_VERSION:
      raise FormatError(
        f'{index_path}: written in checkpoint format version {min_consumer}; '
        f'this reader reads version {_BUNDLE_VERSION}.'
      )
    return header.get(1, 1)

  def shard_path(self, shard: int) -> str:
    return f'{self.prefix}.data-{shard:05d}-of-{self._num_shards:05d}'

  def get_tensor(self, name: str):
    """The tensor ``name``; KeyError if the checkpoint has none of that name."""
    entry = self._entries[name]
    if 'slices' in entry:
      raise FormatError(
        f'{self.prefix}.index: {name} is a partitioned variable; this reader '
        'reads whole variables only.'
      )
    if entry['dtype'] != _DT_STRING and entry['dtype'] not in _DTYPES:
      raise FormatError(
        f'{self.prefix}.index: {name} has TensorFlow dtype {entry["dtype"]}, '
        'which this reader does not read.'
      )
    path = self.shard_path(entry['shard'])
    offset, size = entry['offset'], entry['size']
    try:
      with open(path, 'rb') as f:
        file_size = os.fstat(f.fileno()).st_size
        f.seek(offset)
        data = bytearray(size)
        got = f.readinto(data)
    except FileNotFoundError:
      raise FileNotFoundError(
        f'{path}: missing; the checkpoint {self.prefix} needs it for {name}.'
      ) from None
    if got != size:
      raise FormatError(
        f'{path}: truncated ({name} needs bytes {offset}..{offset + size}, '
        f'the file has {file_size}).'
      )
    shape = entry['shape']
    count = int(np.prod(shape))
    if entry['dtype'] == _DT_STRING:
      strings, checked_bytes = _strings(data, count, path, name)
    else:
      checked_bytes = data
    if crc32c(checked_bytes) != _unmask(entry['crc']):
      raise FormatError(f'{path}: {name} fails its checksum (a corrupt file).')
    if entry['dtype'] == _DT_STRING:
      array = np.array(strings, dtype=object).reshape(shape)
    else:
      dtype = _DTYPES[entry['dtype']]
      if size != count * dtype.itemsize:
        raise FormatError(
          f'{path}: {name} has {size} bytes; its shape {list(shape)} of '
          f'{dtype.name} needs {count * dtype.itemsize}.'
        )
      array = np.frombuffer(data, dtype).reshape(shape)
    return array[()] if not shape else array  # A scalar as TensorFlow gives it: not 0-d.


def _strings(data: bytearray, count: int, path: str, name: str) -> Tuple[List[bytes], bytes]:
  """The elements of a string tensor's ``data``, and the bytes its checksum covers.

  TensorFlow checksums each length as a little-endian uint32 (uint64 past 4 GiB), not as
  the varint it writes, then the rest of the data as written.
  """
  lengths, pos = [], 0
  try:
    for _ in range(count):
      length, pos = _varint(data, pos)
      lengths.append(length)
  except IndexError:
    raise FormatError(f'{path}: {name}: a malformed string tensor (a corrupt file).') from None
  if pos + 4 + sum(lengths) != len(data):
    raise FormatError(f'{path}: {name}: a malformed string tensor (a corrupt file).')
  checked = b''.join(struct.pack('<I' if n <= 0xFFFFFFFF else '<Q', n) for n in lengths)
  checked += data[pos:]  # The lengths' own masked checksum, then the elements.
  pos += 4
  strings = []
  for length in lengths:
    strings.append(bytes(data[pos : pos + length]))
    pos += length
  return strings, checked


def read(prefix: str) -> Dict[str, object]:
  """Every tensor of the checkpoint at ``prefix``, by name (see ``Reader``)."""
  reader = Reader(prefix)
  return {name: reader.get_tensor(name) for name in reader.shapes}
