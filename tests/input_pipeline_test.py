"""Input pipeline: PRiSM's windowing, split, shuffle, checkpointable state, hosts."""

from absl import flags
import grain
import numpy as np
import pytest
import soundfile as sf

from samplernn_jax import input_pipeline
from samplernn_jax import quantization

S, F = 32, 8  # tiny config: seq_len, big frame.


@pytest.fixture
def config(tiny_config):
  tiny_config.data.val_frac = 0.2
  return tiny_config


def write_corpus(directory, lengths, rate=8000, seed=0):
  """Distinct noise files; returns {path: float samples as read back}."""
  directory.mkdir(exist_ok=True)
  rng = np.random.default_rng(seed)
  corpus = {}
  for i, n in enumerate(lengths):
    path = directory / f'f{i:02d}.wav'
    sf.write(path, rng.uniform(-0.8, 0.8, n), rate, subtype='PCM_16')
    corpus[str(path)] = sf.read(path, dtype='float32')[0]
  return corpus


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_windows_concatenate_back_to_the_files(tmp_path, config):
  corpus = write_corpus(tmp_path / 'd', [5 * S + 7] * 10)
  ds = input_pipeline.make_datasets(
    config, str(tmp_path / 'd'), num_epochs=1, process_index=0, process_count=1
  )
  assert (len(ds.train_files), len(ds.val_files)) == (8, 2)
  assert ds.windows_per_epoch == (10,)  # 2 groups of 4 files, 5 windows each.
  windows = list(ds.train)
  assert len(windows) == 10
  first = windows[:5]
  assert [bool(w['reset']) for w in windows] == [True] + [False] * 4 + [True] + [False] * 4
  assert [bool(w['epoch_end']) for w in windows] == [False] * 9 + [True]
  for w in first:
    assert w['x'].shape == (4, S + F) and w['x'].dtype == np.int32 and w['mask'].all()
  silence = quantization.silence_level(256)
  np.testing.assert_array_equal(first[0]['x'][:, :F], silence)  # PRiSM's zero pad.
  for prev, cur in zip(first, first[1:]):
    np.testing.assert_array_equal(cur['x'][:, :F], prev['x'][:, -F:])  # One big frame.
  rows = np.concatenate([w['x'][:, F:] for w in first], axis=1)
  encoded = {p: quantization.encode(x[: 5 * S], 'mu-law', 256) for p, x in corpus.items()}
  for row in rows:
    assert sum(np.array_equal(row, e) for e in encoded.values()) == 1


def test_group_is_cut_to_its_shortest_file(tmp_path, config):
  config.data.val_frac = 0.0
  write_corpus(tmp_path / 'd', [3 * S + 5, 6 * S, 7 * S, 9 * S])
  ds = input_pipeline.make_datasets(
    config, str(tmp_path / 'd'), num_epochs=1, process_index=0, process_count=1
  )
  assert ds.windows_per_epoch == (3,) and ds.val is None
  assert len(list(ds.train)) == 3


def test_shuffle_differs_per_epoch_and_repeats_per_seed(tmp_path, config):
  write_corpus(tmp_path / 'd', [2 * S] * 10)
  make = lambda: input_pipeline.make_datasets(
    config, str(tmp_path / 'd'), num_epochs=3, process_index=0, process_count=1
  )
  run1, run2 = list(make().train), list(make().train)
  assert_batches_equal(run1, run2)
  epochs = [np.concatenate([w['x'] for w in run1 if w['epoch'] == e]) for e in range(3)]
  assert not np.array_equal(epochs[0], epochs[1])
  assert [int(w['epoch']) for w in run1] == [0] * 4 + [1] * 4 + [2] * 4


def test_state_restore_gives_the_same_next_batches(tmp_path, config):
  write_corpus(tmp_path / 'd', [3 * S + 1] * 10)
  ds = input_pipeline.make_datasets(
    config, str(tmp_path / 'd'), num_epochs=2, process_index=0, process_count=1
  )
  it = iter(ds.train)
  take(it, 4)  # Mid-way through the second group.
  state = it.get_state()
  expected = take(it, 7)  # Across a group and an epoch boundary.
  fresh = iter(ds.train)
  fresh.set_state(state)
  assert_batches_equal(take(fresh, 7), expected)
  # The same through grain's Orbax handler (JSON on disk).
  it = iter(ds.train)
  take(it, 4)
  grain.checkpoint.CheckpointHandler().save(tmp_path, args=grain.checkpoint.CheckpointSave(it))
  restored = grain.checkpoint.CheckpointHandler().restore(
    tmp_path, args=grain.checkpoint.CheckpointRestore(iter(ds.train))
  )
  assert_batches_equal(take(restored, 7), expected)


def test_worker_processes_give_the_same_windows(tmp_path, config):
  write_corpus(tmp_path / 'd', [2 * S + 3] * 10)
  make = lambda: input_pipeline.make_datasets(
    config, str(tmp_path / 'd'), num_epochs=2, process_index=0, process_count=1
  )
  inline = list(make().train)
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()  # grain workers read absl flags; app.run parses them.
  config.data.num_workers = 2
  assert_batches_equal(list(make().train), inline)


def test_hosts_read_their_rows_of_the_same_groups(tmp_path, config):
  write_corpus(tmp_path / 'd', [2 * S] * 10)
  make = lambda i, n: list(
    input_pipeline.make_datasets(
      config, str(tmp_path / 'd'), num_epochs=1, process_index=i, process_count=n
    ).train
  )
  whole, host0, host1 = make(0, 1), make(0, 2), make(1, 2)
  for w, a, b in zip(whole, host0, host1):
    assert a['x'].shape == (2, S + F)
    np.testing.assert_array_equal(np.concatenate([a['x'], b['x']]), w['x'])
    assert a['reset'] == b['reset'] == w['reset']


def test_validation_pads_its_last_group_with_masked_rows(tmp_path, config):
  config.data.val_frac = 0.3
  write_corpus(tmp_path / 'd', [2 * S] * 10)
  ds = input_pipeline.make_datasets(config, str(tmp_path / 'd'), process_index=0, process_count=1)
  assert len(ds.val_files) == 3 and ds.val_windows == 2
  windows = list(ds.val)
  assert len(windows) == 2 and [bool(w['epoch_end']) for w in windows] == [False, True]
  np.testing.assert_array_equal(windows[0]['mask'], [True, True, True, False])
  silence = quantization.silence_level(256)
  np.testing.assert_array_equal(windows[1]['x'][3], silence)
  assert_batches_equal(list(ds.val), windows)  # Unshuffled: every pass is the same.


def test_file_at_another_rate_is_resampled(tmp_path, config):
  config.data.val_frac = 0.0
  write_corpus(tmp_path / 'd', [4 * S * 2] * 4, rate=16000)  # 4 windows once at 8 kHz.
  ds = input_pipeline.make_datasets(
    config, str(tmp_path / 'd'), num_epochs=1, process_index=0, process_count=1
  )
  assert ds.windows_per_epoch == (4,) and len(list(ds.train)) == 4


def test_split_is_by_file_deterministic_and_keeps_one_of_each():
  files = [f'f{i}.wav' for i in range(20)]
  train, val = input_pipeline.split_files(files, 0.1)
  assert len(val) == 2 and sorted(train + val) == sorted(files)
  assert input_pipeline.split_files(files, 0.1) == (train, val)
  assert [len(p) for p in input_pipeline.split_files(files[:2], 0.1)] == [1, 1]
  assert input_pipeline.split_files(files[:1], 0.1) == (files[:1], [])


def test_errors_name_the_directory_and_what_was_expected(tmp_path, config):
  with pytest.raises(FileNotFoundError, match='missing.*not a directory'):
    input_pipeline.find_audio_files(str(tmp_path / 'missing'))
  (tmp_path / 'notes.txt').write_text('no audio here')
  with pytest.raises(ValueError, match=r'holds no audio files.*\.wav'):
    input_pipeline.find_audio_files(str(tmp_path))
  write_corpus(tmp_path / 'few', [2 * S] * 3)
  with pytest.raises(ValueError, match='fewer than batch_size 4'):
    input_pipeline.make_datasets(config, str(tmp_path / 'few'), process_index=0, process_count=1)
