"""Training and validation windows, batched the way PRiSM's dataset.py batches them.

Public API::

  files = find_audio_files(data_dir)            # sorted paths; raises if none
  train_files, val_files = split_files(files, val_frac)
  ds = make_datasets(config, data_dir)          # -> Datasets
  it = iter(ds.train)                           # grain DatasetIterator over all epochs
  for batch in it: ...
  ds.windows_per_epoch[epoch]                   # train windows (steps) in that epoch
  for batch in ds.val: ...                      # one unshuffled pass, ds.val_windows long

Every batch is a dict of NumPy values (B = config.train.batch_size / process_count
rows on this host, S = config.data.seq_len, F = config.model.frame_sizes[-1]):

  'x':         int32[B, F + S]  quantized samples; predict x[:, F:] from x[:, :-1]
  'mask':      bool[B]          False on padding rows (only in the last val batch)
  'reset':     bool             True on a batch of new files: zero the RNN carry
  'epoch':     int32            the epoch this window belongs to (val: 0)
  'epoch_end': bool             True on the last window of the epoch

How windows are made (PRiSM dataset.py: get_dataset, pad_batch, get_subseq):

* Files go B at a time, side by side, one row each. Each row's samples are cut to
  K * S samples and F quantized zeros are put in front, then windows
  ``x = row[k*S : k*S + S + F]`` for k = 0..K-1 follow in order: consecutive
  windows overlap by one big frame, and concatenating ``x[:, F:]`` over the K
  windows gives back the first K * S samples of every file.
* K = floor(shortest file in the group / S). PRiSM needs all files of a batch to be
  the same length (tf.data cannot batch different lengths); here longer files are
  cut to the shortest one, which is the same thing for samplernn-prepare's chunks.
* Train files are shuffled per epoch with ``config.data.shuffle_seed``; the files
  left over after the last full group of B are not used that epoch (PRiSM's
  drop_remainder). Validation keeps its file order and pads its last group with
  silent rows whose 'mask' is False, so every validation file counts.
* Train/validation split is by file, fixed by a seed of its own (PRiSM's 4), so
  it does not move when the shuffle seed does: round(val_frac * n) files, at least
  one each when there are two or more files and val_frac > 0.
* Reading: soundfile; several channels are averaged; a file at another rate than
  ``config.data.sample_rate`` is resampled with soxr (HQ) on every read, so prepare
  the corpus at the training rate (samplernn-prepare) to skip that cost. Samples
  are quantized with ``quantization.encode(config.model.q_type, q_levels)``.
* Multi-host: every host reads its own rows (B / process_count) of the same groups,
  so all hosts agree on K, 'reset' and epochs.

``ds.train`` is a grain IterDataset; its iterator's ``get_state()/set_state()``
restore the exact position, mid-group included (the group is re-read on restore),
so ``grain.checkpoint.CheckpointSave(it)`` / ``CheckpointRestore(it)`` resume with
the same next batch. ``config.data.num_workers`` > 0 decodes groups in that many
grain worker processes; the windows and their order do not change (grain's workers
read absl flags, so parse them first: ``app.run`` does).
"""

from collections.abc import Sequence
import dataclasses
import os

from absl import logging
import grain
import numpy as np

from samplernn_jax import audio_io
from samplernn_jax import quantization

# PRiSM's split seed (dataset.py: random.Random(4)), independent of the shuffle seed.
SPLIT_SEED = 4


def find_audio_files(data_dir: str) -> list[str]:
  """Sorted paths of the audio files under ``data_dir`` (recursive; dot-names skipped).

  Raises FileNotFoundError if ``data_dir`` is not a directory, ValueError if it
  holds no file that training reads (``audio_io.SOUNDFILE_EXTENSIONS``).
  """
  suffixes = ', '.join(audio_io.SOUNDFILE_EXTENSIONS)
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(
      f'data_dir {data_dir!r} is not a directory; expected a directory of audio files '
      f'({suffixes}), for example the output of samplernn-prepare.'
    )
  files = audio_io.find_audio(data_dir, audio_io.SOUNDFILE_EXTENSIONS)
  if not files:
    raise ValueError(
      f'data_dir {data_dir!r} holds no audio files; expected files ending in '
      f'{suffixes} (run samplernn-prepare to make them from others).'
    )
  return files


def split_files(files: Sequence[str], val_frac: float) -> tuple[list[str], list[str]]:
  """Deterministic (train, validation) split by file; each part sorted."""
  if not 0 <= val_frac < 1:
    raise ValueError(f'val_frac must be in [0, 1), got {val_frac}.')
  order = np.random.default_rng(SPLIT_SEED).permutation(len(files))
  num_val = int(round(val_frac * len(files)))
  if val_frac > 0 and len(files) >= 2:
    num_val = min(max(num_val, 1), len(files) - 1)
  val = sorted(files[i] for i in order[:num_val])
  train = sorted(files[i] for i in order[num_val:])
  return train, val


@dataclasses.dataclass(frozen=True)
class _Windowing:
  """What turns files into windows; shared by the source and the window cutter."""

  seq_len: int
  big_frame: int
  sample_rate: int
  q_type: str
  q_levels: int


class _GroupSource:
  """Random access to groups of files: element g is one group of this host's rows.

  Element ``epoch * groups_per_epoch + g`` is a dict with 'x' (quantized
  [rows, F + K*S]), 'mask', 'epoch', 'windows' (K) and 'last' (the epoch's final
  group with windows). Picklable, so grain workers can each build it.
  """

  def __init__(
    self, files, lengths, windowing, *, batch_size, rows, num_epochs, shuffle, seed, pad_last
  ):
    self._files = list(files)
    self._lengths = np.asarray(lengths, np.int64)
    self._w = windowing
    self._batch_size = batch_size
    self._rows = rows
    self._num_epochs = num_epochs
    self._shuffle = shuffle
    self._seed = seed
    n = len(self._files)
    self.groups_per_epoch = -(-n // batch_size) if pad_last else n // batch_size
    self._plans = {}
    # Big enough for any level, small enough that a group crosses processes cheaply.
    self._dtype = np.uint8 if windowing.q_levels <= 256 else np.int32

  def __len__(self) -> int:
    return self._num_epochs * self.groups_per_epoch

  @property
  def max_windows(self) -> int:
    """An upper bound on the windows of any group: those of the longest file."""
    return int(self._lengths.max(initial=0) // self._w.seq_len)

  def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(file indices int[G, B] with -1 for padding, windows int[G]) of an epoch."""
    if epoch not in self._plans:
      n, b, g = len(self._files), self._batch_size, self.groups_per_epoch
      order = (
        np.random.default_rng([self._seed, epoch]).permutation(n) if self._shuffle else np.arange(n)
      )
      index_GxB = np.full(g * b, -1, np.int64)
      used = min(n, g * b)
      index_GxB[:used] = order[:used]
      index_GxB = index_GxB.reshape(g, b)
      lengths_GxB = np.where(index_GxB >= 0, self._lengths[index_GxB], np.iinfo(np.int64).max)
      windows_G = lengths_GxB.min(axis=1) // self._w.seq_len
      self._plans[epoch] = (index_GxB, windows_G)
    return self._plans[epoch]

  def __getitem__(self, index: int) -> dict:
    epoch, g = divmod(int(index), self.groups_per_epoch)
    index_GxB, windows_G = self.plan(epoch)
    num_windows = int(windows_G[g])
    with_windows = np.flatnonzero(windows_G)
    w = self._w
    length = num_windows * w.seq_len
    silence = quantization.silence_level(w.q_levels)
    rows = index_GxB[g, self._rows]
    x_RxT = np.full((len(rows), w.big_frame + length), silence, self._dtype)
    for r, i in enumerate(rows):
      if i < 0 or not length:
        continue
      try:
        samples_N = audio_io.read_mono(self._files[i], w.sample_rate)
      except audio_io.AudioError as e:
        raise ValueError(f'{self._files[i]}: {e}') from e
      if len(samples_N) < length:
        raise ValueError(
          f'{self._files[i]}: decoded {len(samples_N)} samples, its header '
          f'promised at least {length}; is the file truncated?'
        )
      # PRiSM pads with float zeros and then quantizes: the pad is the silence level.
      x_RxT[r, w.big_frame :] = quantization.encode(samples_N[:length], w.q_type, w.q_levels)
    return {
      'x': x_RxT,
      'mask': rows >= 0,
      'epoch': epoch,
      'windows': num_windows,
      'last': bool(with_windows.size and g == with_windows[-1]),
    }


class _Windows(Sequence):
  """The K truncated-BPTT windows of one group, cut on demand."""

  def __init__(self, group: dict, seq_len: int, big_frame: int):
    self._group, self._seq_len, self._big_frame = group, seq_len, big_frame

  def __len__(self) -> int:
    return self._group['windows']

  def __getitem__(self, k: int) -> dict:
    if not 0 <= k < len(self):
      raise IndexError(k)
    g, start = self._group, k * self._seq_len
    return {
      'x': g['x'][:, start : start + self._seq_len + self._big_frame].astype(np.int32),
      'mask': g['mask'],
      'reset': np.bool_(k == 0),
      'epoch': np.int32(g['epoch']),
      'epoch_end': np.bool_(g['last'] and k == len(self) - 1),
    }


class _CutWindows(grain.experimental.FlatMapTransform):
  def __init__(self, seq_len: int, big_frame: int, max_windows: int):
    self._seq_len, self._big_frame = seq_len, big_frame
    self.max_fan_out = max(1, max_windows)

  def flat_map(self, group: dict) -> Sequence[dict]:
    return _Windows(group, self._seq_len, self._big_frame)


def _windows_dataset(
  source: _GroupSource, windowing: _Windowing, num_workers: int
) -> grain.IterDataset:
  # One group read ahead in a thread: a group is up to tens of MB, so no deeper.
  ds = grain.MapDataset.source(source).to_iter_dataset(
    grain.ReadOptions(num_threads=1, prefetch_buffer_size=1)
  )
  if num_workers > 0:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return grain.experimental.FlatMapIterDataset(
    ds, _CutWindows(windowing.seq_len, windowing.big_frame, source.max_windows)
  )


@dataclasses.dataclass(frozen=True)
class Datasets:
  """What make_datasets returns; see the module docstring for the batch dict."""

  train: grain.IterDataset  # All train windows of num_epochs epochs, in order.
  val: grain.IterDataset | None  # One pass over the validation files; None if none.
  windows_per_epoch: tuple[int, ...]  # Train windows in each epoch (equal for equal files).
  val_windows: int  # Windows in one pass of ds.val.
  train_files: tuple[str, ...]
  val_files: tuple[str, ...]


def usable_files(
  files: Sequence[str], sample_rate: int, on_bad_file: str = 'skip', min_length: int = 1
) -> tuple[list[str], list[int], list[int]]:
  """The files whose header and length check out, their lengths at ``sample_rate`` and
  their own rates.

  Checked when the dataset is built, so a bad file stops the run before step 1 (or is
  skipped, with a warning naming it) instead of failing whenever its group is first read.
  ``on_bad_file``: 'skip' or 'stop' (ValueError naming the files). A file shorter than
  ``min_length`` samples (one window) is sound audio with nothing to train on: skipped with
  a warning naming it, whatever ``on_bad_file`` says, since a batch's files are cut to the
  shortest and one such file would leave its whole batch without a window.
  """
  good, lengths, rates, bad, short = [], [], [], [], []
  for path in files:
    try:
      frames, rate = audio_io.probe(path)
    except (audio_io.AudioError, OSError) as e:
      bad.append(f'{path}: {e}')
      continue
    length = audio_io.resampled_length(frames, rate, sample_rate)
    if length < min_length:
      short.append(f'{path} ({length})')
      continue
    good.append(path)
    lengths.append(length)
    rates.append(rate)
  if short:
    logging.warning(
      'Skipping %d file(s) shorter than one training window (%d samples at %d Hz): %s',
      len(short),
      min_length,
      sample_rate,
      ', '.join(short),
    )
  if bad and on_bad_file == 'stop':
    more = f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''
    raise ValueError(
      f'{bad[0]}{more}. Remove or replace the file, or pass '
      '--config.data.on_bad_file=skip to train without it.'
    )
  for reason in bad:
    logging.warning('Skipping %s', reason)
  return good, lengths, rates


def _note_resampling(data_dir: str, rates: Sequence[int], sample_rate: int) -> None:
  """Says once when the files are not at the model's rate: the run hears other audio than
  the files hold (the demo config at 8 kHz on 16 kHz chunks, say) and pays a resampling."""
  others = sorted(set(rates) - {sample_rate})
  if others:
    logging.warning(
      'The audio in %s is at %s Hz; the model trains and generates at %d Hz '
      '(config.data.sample_rate), so every read is resampled. To train at the files\' rate, '
      'pass --config.data.sample_rate=%d; to skip the resampling, prepare them at %d Hz '
      '(samplernn-prepare --sample_rate=%d).',
      data_dir,
      '/'.join(str(r) for r in others),
      sample_rate,
      others[-1],
      sample_rate,
      sample_rate,
    )


def make_datasets(
  config,
  data_dir: str,
  *,
  num_epochs: int | None = None,
  process_index: int | None = None,
  process_count: int | None = None,
) -> Datasets:
  """Train and validation windows of the audio files under ``data_dir``.

  ``num_epochs`` defaults to config.train.num_epochs; the process index and count
  default to JAX's. Raises FileNotFoundError/ValueError for a missing or empty
  ``data_dir``, fewer training files than the batch, or a batch that does not
  split evenly over hosts.
  """
  if process_index is None or process_count is None:
    import jax  # Lazily: grain workers unpickle this module and need no JAX.

    process_index, process_count = jax.process_index(), jax.process_count()
  batch_size = config.train.batch_size
  if batch_size % process_count:
    raise ValueError(f'batch_size {batch_size} does not split over {process_count} hosts.')
  per_host = batch_size // process_count
  rows = slice(process_index * per_host, (process_index + 1) * per_host)
  windowing = _Windowing(
    seq_len=config.data.seq_len,
    big_frame=config.model.frame_sizes[-1],
    sample_rate=config.data.sample_rate,
    q_type=config.model.q_type,
    q_levels=config.model.q_levels,
  )
  quantization.check_q_type(windowing.q_type, windowing.q_levels)

  train_files, val_files = split_files(find_audio_files(data_dir), config.data.val_frac)
  # The split is made before bad files drop out, so one bad file does not move the others.
  on_bad_file = config.data.on_bad_file
  train_files, train_lengths, train_rates = usable_files(
    train_files, windowing.sample_rate, on_bad_file, windowing.seq_len
  )
  val_files, val_lengths, val_rates = usable_files(
    val_files, windowing.sample_rate, on_bad_file, windowing.seq_len
  )
  if process_index == 0:
    _note_resampling(data_dir, train_rates + val_rates, windowing.sample_rate)
  if len(train_files) < batch_size:
    raise ValueError(
      f'{data_dir!r} gives {len(train_files)} training files, fewer than batch_size '
      f'{batch_size}: every batch reads {batch_size} files side by side. Lower '
      f'config.train.batch_size or add files (e.g. shorter chunks from samplernn-prepare).'
    )
  num_epochs = config.train.num_epochs if num_epochs is None else num_epochs
  seed = config.data.shuffle_seed
  train = _GroupSource(
    train_files,
    train_lengths,
    windowing,
    batch_size=batch_size,
    rows=rows,
    num_epochs=num_epochs,
    shuffle=True,
    seed=seed,
    pad_last=False,
  )
  windows_per_epoch = tuple(int(train.plan(e)[1].sum()) for e in range(num_epochs))
  val_ds, val_windows = None, 0
  if val_files:
    val = _GroupSource(
      val_files,
      val_lengths,
      windowing,
      batch_size=batch_size,
      rows=rows,
      num_epochs=1,
      shuffle=False,
      seed=seed,
      pad_last=True,
    )
    val_ds = _windows_dataset(val, windowing, config.data.num_workers)
    val_windows = int(val.plan(0)[1].sum())
  return Datasets(
    train=_windows_dataset(train, windowing, config.data.num_workers),
    val=val_ds,
    windows_per_epoch=windows_per_epoch,
    val_windows=val_windows,
    train_files=tuple(train_files),
    val_files=tuple(val_files),
  )
