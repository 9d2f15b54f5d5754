"""The curation score: its ranking of real against broken audio, its command and its API."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from samplernn_jax import audio_io
from samplernn_jax.corpus import demo_corpus
from samplernn_jax.listening import clip_score
from tests import score_validation

RATE = 8000


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  """36 demo melodies of 2 s: 24 to profile, 12 held out."""
  path = str(tmp_path_factory.mktemp('corpus'))
  files = demo_corpus.synthesize(path, sample_rate=RATE, num_files=36, seconds=2.0)
  return files[:24], files[24:]


@pytest.fixture(scope='module')
def profile(corpus):
  return clip_score.make_profile(corpus[0], RATE, 'demo')


def test_held_out_music_ranks_above_every_broken_kind(profile, corpus):
  held_out = [audio_io.read_mono(p, RATE) for p in corpus[1]]
  result = score_validation.evaluate(profile, held_out, RATE, clip_seconds=2.0)
  print('AUC', result['auc'], result['auc_per_kind'], result['auc_per_part'])
  assert result['auc'] >= 0.95, result['auc_per_kind']
  assert min(result['auc_per_kind'].values()) >= 0.9, result['auc_per_kind']
  # Real clips keep most of the range: no penalty, closeness near 1.
  assert np.median([p['score'] for p in result['positives']]) > 0.7


def test_parts_and_penalties(profile, corpus):
  melody = audio_io.read_mono(corpus[1][0], RATE)
  parts = clip_score.score_audio(melody, RATE, profile)
  assert set(clip_score.GROUP_WEIGHTS) | {
    'closeness',
    'penalty',
    'silent',
    'stuck',
    'clipped',
    'duration',
  } <= set(parts)
  assert parts['score'] == pytest.approx(parts['closeness'] - parts['penalty'])
  assert clip_score.score_audio(np.zeros(RATE), RATE, profile)['silent'] == 1.0
  assert clip_score.score_audio(np.full(RATE, 0.4), RATE, profile)['stuck'] == 1.0
  assert clip_score.score_audio(np.clip(melody * 20, -1, 1), RATE, profile)['clipped'] > 0.1
  # Without a profile only the penalties count.
  assert clip_score.score_audio(melody, RATE, None)['score'] == pytest.approx(1.0)
  assert clip_score.score_audio(np.zeros(RATE), RATE, None)['score'] == 0.0
  # A clip shorter than one analysis window still gets a finite score.
  assert np.isfinite(clip_score.score_audio(melody[:100], RATE, profile)['score'])


def test_offsets_tones_and_loops_are_defects(profile, corpus):
  melody = audio_io.read_mono(corpus[1][0], RATE)
  t = np.arange(melody.shape[0]) / RATE
  clean = clip_score.score_audio(melody, RATE, profile)
  assert clean['dc'] < 0.01 and clean['steady'] < 0.01
  # The melody on an offset: its features are those of the melody, the offset a penalty.
  offset = clip_score.score_audio(melody + 0.3, RATE, profile)
  assert offset['dc'] > 0.5 and offset['closeness'] == pytest.approx(clean['closeness'], abs=0.05)
  assert offset['score'] < clean['score'] - 0.2
  # An offset quieter than the melody is not heard: it costs nothing.
  level = float(np.sqrt(np.mean(melody**2)))
  under = clip_score.score_audio(melody + 0.6 * level, RATE, profile)
  assert 0.2 < under['dc'] < 0.5 and under['score'] == pytest.approx(clean['score'], abs=0.05)
  tone = clip_score.score_audio(0.3 * np.sin(2 * np.pi * 220 * t), RATE, profile)
  loop = clip_score.score_audio(np.resize(melody[1000:1800], melody.shape[0]), RATE, profile)
  for parts in (tone, loop):
    assert parts['steady'] > 0.5 and parts['score'] < 0.4
  # Silence is silent, not also steady.
  assert clip_score.score_audio(np.zeros(RATE), RATE, profile)['steady'] == 0.0


def test_profile_of_the_training_files_is_stored_once(corpus, tmp_path, tiny_config):
  data_dir = os.path.dirname(corpus[0][0])
  workdir = str(tmp_path / 'run')
  stored = clip_score.store_training_profile(workdir, data_dir, tiny_config)
  assert stored.sample_rate == tiny_config.data.sample_rate
  assert stored.num_segments == 32  # 36 files less the 10% validation files.
  stamp = os.stat(clip_score.profile_path(workdir)).st_mtime_ns
  clip_score.store_training_profile(workdir, data_dir, tiny_config)
  assert os.stat(clip_score.profile_path(workdir)).st_mtime_ns == stamp
  assert clip_score.load_profile(workdir) == stored


def test_score_paths(corpus, tmp_path):
  junk = tmp_path / 'junk.wav'
  junk.write_bytes(b'not audio')
  good = corpus[1][0]
  reference = os.path.dirname(corpus[0][0])
  got = clip_score.score_paths([good, str(junk)], reference)
  assert [r['path'] for r in got] == [good, str(junk)]
  assert isinstance(got[0]['score'], float) and got[0]['score'] > 0.5
  assert got[1]['score'] == clip_score.WORST_SCORE and 'not readable audio' in got[1]['error']
  with pytest.raises(FileNotFoundError, match='not a directory'):
    clip_score.score_paths([good], str(tmp_path / 'nowhere'))


def _score_command(*args):
  return subprocess.run(
    [sys.executable, '-m', 'samplernn_jax.commands.score', *args],
    capture_output=True,
    text=True,
    timeout=120,
  )


def test_command_on_a_folder_and_a_workdir(profile, corpus, tmp_path):
  clips = tmp_path / 'clips'
  clips.mkdir()
  sf.write(clips / 'melody.wav', audio_io.read_mono(corpus[1][0], RATE), RATE)
  sf.write(clips / 'silence.wav', np.zeros(RATE), RATE)
  (clips / 'broken.wav').write_bytes(b'RIFF....WAVEjunk')
  proc = _score_command(f'--reference={os.path.dirname(corpus[0][0])}', str(clips))
  rows = [json.loads(line) for line in proc.stdout.splitlines()]
  assert [os.path.basename(r['path']) for r in rows] == ['melody.wav', 'silence.wav']
  assert rows[0]['score'] > rows[1]['score']
  # The bad file: one line naming it, no traceback, and a failing exit status.
  assert proc.returncode == 1
  assert proc.stderr.count('broken.wav: ') == 1 and 'Traceback' not in proc.stderr

  workdir = tmp_path / 'run'
  clip_score.save_profile(str(workdir), profile)
  proc = _score_command(f'--reference={workdir}', str(clips / 'melody.wav'))
  assert proc.returncode == 0, proc.stderr
  (row,) = [json.loads(line) for line in proc.stdout.splitlines()]
  assert row['score'] == pytest.approx(rows[0]['score'], abs=0.05)

  proc = _score_command(f'--reference={tmp_path / "nowhere"}', str(clips))
  assert proc.returncode == 1 and 'not a directory' in proc.stderr
  assert 'Traceback' not in proc.stderr
