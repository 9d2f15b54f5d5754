"""samplernn-prepare: chunk_audio.py's boundaries and silence rule, bad files, re-runs."""

import os

import numpy as np
import pytest
import soundfile as sf

from samplernn_jax.corpus import prepare

RATE = 16000
SETTINGS = prepare.Settings(sample_rate=RATE, chunk_length_ms=1000, overlap_ms=250)


def noise(seconds, amplitude=0.5, seed=0):
  rng = np.random.default_rng(seed)
  return rng.uniform(-amplitude, amplitude, int(seconds * RATE)).astype(np.float32)


def write_pcm(path, samples_N, rate=RATE):
  sf.write(path, samples_N, rate, subtype='PCM_16')
  return sf.read(path, dtype='int16')[0]


@pytest.mark.parametrize(
  'audio_len_ms,expected',
  [
    (7999, []),
    (8000, []),  # A chunk ending exactly at the end is dropped, as chunk_audio.py does.
    (8001, [(0, 8000)]),
    (20000, [(0, 8000), (7000, 15000)]),
    (22000, [(0, 8000), (7000, 15000)]),
    (22001, [(0, 8000), (7000, 15000), (14000, 22000)]),
  ],
)
def test_chunk_bounds_follow_chunk_audio(audio_len_ms, expected):
  assert prepare.chunk_bounds_ms(audio_len_ms, 8000, 1000) == expected


def test_chunks_are_exact_overlapping_slices(tmp_path):
  pcm = write_pcm(tmp_path / 'song.wav', noise(3.6))
  results = prepare.prepare(
    [str(tmp_path / 'song.wav')], str(tmp_path / 'out'), SETTINGS, progress=False
  )
  assert results[0].status == 'done' and results[0].chunks_written == 4
  names = sorted(n for n in os.listdir(tmp_path / 'out') if n.endswith('.wav'))
  assert names == [f'song_{k:05d}.wav' for k in range(4)]
  for k, name in enumerate(names):
    chunk, rate = sf.read(tmp_path / 'out' / name, dtype='int16')
    assert rate == RATE and sf.info(tmp_path / 'out' / name).subtype == 'PCM_16'
    start = k * 750 * RATE // 1000
    np.testing.assert_array_equal(chunk, pcm[start : start + RATE])


def test_silence_rule_is_half_a_chunk_at_threshold():
  def pcm(samples_N):
    return np.round(samples_N * 32768).astype(np.int16)

  loud = noise(1.0)
  half = loud.copy()
  half[300 * 16 : 800 * 16] = 0  # 500 ms of digital silence: exactly half the chunk.
  almost = loud.copy()
  almost[300 * 16 : 799 * 16] = 0  # 499 ms: one millisecond short.
  quiet = noise(1.0, amplitude=10 ** (-66 / 20) * np.sqrt(3))  # RMS -66 dBFS.
  hiss = noise(1.0, amplitude=10 ** (-60 / 20) * np.sqrt(3))  # RMS -60 dBFS.
  silent = lambda x: prepare.is_silent(pcm(x), RATE, 1000, -64.0)
  assert silent(half) and silent(quiet)
  assert not silent(almost) and not silent(hiss) and not silent(loud)


def test_silent_chunks_are_dropped_and_counted(tmp_path):
  x = noise(3.6)
  x[750 * 16 : 1750 * 16] = 0  # Chunk 1 is wholly silent.
  write_pcm(tmp_path / 'gap.wav', x)
  (result,) = prepare.prepare([str(tmp_path)], str(tmp_path / 'out'), SETTINGS, progress=False)
  assert (result.chunks_written, result.chunks_silent) == (3, 1)
  assert not (tmp_path / 'out' / 'gap_00001.wav').exists()
  assert (tmp_path / 'out' / 'gap_00002.wav').exists()


def test_bad_files_are_reported_and_others_written(tmp_path):
  src = tmp_path / 'src'
  src.mkdir()
  write_pcm(src / 'good.wav', noise(1.5))
  (src / 'junk.ogg').write_text('hello\n' * 100)
  (src / 'empty.flac').write_bytes(b'')
  sf.write(src / 'nan.wav', np.full(RATE * 2, np.nan, np.float32), RATE, subtype='FLOAT')
  results = prepare.prepare([str(src)], str(tmp_path / 'out'), SETTINGS, progress=False)
  by_name = {os.path.basename(r.path): r for r in results}
  assert by_name['good.wav'].status == 'done' and by_name['good.wav'].chunks_written == 1
  for name in ('junk.ogg', 'empty.flac', 'nan.wav'):
    assert by_name[name].status == 'failed' and by_name[name].reason
  text = prepare.summary(results, 'out')
  assert 'Files failed: 3' in text and 'empty file' in text and 'non-finite' in text
  assert (tmp_path / 'out' / 'good_00000.wav').exists()


def test_rerun_skips_finished_files_and_redoes_changed_settings(tmp_path):
  write_pcm(tmp_path / 'a.wav', noise(3.6, seed=1))
  write_pcm(tmp_path / 'b.wav', noise(2.0, seed=2))
  out = tmp_path / 'out'
  first = prepare.prepare(
    [str(tmp_path / 'a.wav'), str(tmp_path / 'b.wav')], str(out), SETTINGS, progress=False
  )
  mtimes = {n: os.stat(out / n).st_mtime_ns for n in os.listdir(out) if n.endswith('.wav')}
  again = prepare.prepare(
    [str(tmp_path / 'a.wav'), str(tmp_path / 'b.wav')],
    str(out),
    SETTINGS,
    num_workers=2,
    progress=False,
  )
  assert [r.status for r in first] == ['done', 'done']
  assert [r.status for r in again] == ['skipped', 'skipped']
  assert {n: os.stat(out / n).st_mtime_ns for n in mtimes} == mtimes
  longer = prepare.Settings(RATE, chunk_length_ms=2000, overlap_ms=0)
  redone = prepare.prepare([str(tmp_path / 'a.wav')], str(out), longer, progress=False)
  assert redone[0].status == 'done'
  a_chunks = sorted(n for n in os.listdir(out) if n.startswith('a_'))
  assert a_chunks == ['a_00000.wav']  # The 1 s chunks of the old settings are gone.


def test_parallel_run_matches_inline_run(tmp_path):
  for i in range(3):
    write_pcm(tmp_path / f's{i}.wav', noise(1.9, seed=i))
  # The outputs sit inside the input folder: neither run may read chunks as sources.
  inline = prepare.prepare([str(tmp_path)], str(tmp_path / 'o1'), SETTINGS, progress=False)
  parallel = prepare.prepare(
    [str(tmp_path)], str(tmp_path / 'o2'), SETTINGS, num_workers=2, progress=False
  )
  assert [(r.status, r.chunks_written) for r in inline] == [
    (r.status, r.chunks_written) for r in parallel
  ]
  for name in os.listdir(tmp_path / 'o1'):
    if name.endswith('.wav'):
      assert (tmp_path / 'o1' / name).read_bytes() == (tmp_path / 'o2' / name).read_bytes()


def test_same_stem_in_two_folders_gets_distinct_names(tmp_path):
  for folder in ('x', 'y'):
    (tmp_path / folder).mkdir()
    write_pcm(tmp_path / folder / 'take.wav', noise(1.5))
  prepare.prepare([str(tmp_path)], str(tmp_path / 'out'), SETTINGS, progress=False)
  names = [n for n in os.listdir(tmp_path / 'out') if n.endswith('.wav')]
  assert len(names) == 2 and all(n.startswith('take-') for n in names)


@pytest.mark.parametrize('thresh_db', [-70.0, -64.0, -58.0, -52.0])
def test_silence_rule_matches_audioop_windows(thresh_db):
  audioop = pytest.importorskip('audioop')  # pydub's RMS; gone from Python 3.13.
  rng = np.random.default_rng(3)
  envelope = np.repeat(10 ** (rng.uniform(-75, -45, 20) / 20), 160)  # 10 ms steps.
  pcm = np.round(rng.standard_normal(3200) * envelope * 32768).astype(np.int16)
  chunk_ms, rate = 200, 16000
  # pydub.silence.detect_silence, seek_step 1, as one loop over millisecond offsets.
  threshold = 10 ** (thresh_db / 20) * 32768
  expected = any(
    audioop.rms(pcm[start * 16 : (start + chunk_ms // 2) * 16].tobytes(), 2) <= threshold
    for start in range(chunk_ms - chunk_ms // 2 + 1)
  )
  assert prepare.is_silent(pcm, rate, chunk_ms, thresh_db) == expected
