"""files.atomic_write and remove_stale_temps: whole files only, two writers at once, modes kept."""

import os
import stat
import subprocess
import sys
import time

import pytest

from samplernn_jax import files
from tests.conftest import REPO

# Each writer writes its own letter, in many small pieces, so two writers overlap in time.
_WRITER = '''
import os, sys, time
from samplernn_jax import files
path, letter, go = sys.argv[1:]
while not os.path.exists(go):
  time.sleep(0.001)
for _ in range(20):
  with files.atomic_write(path) as f:
    for _ in range(200):
      f.write(letter * 1000)
'''


def test_two_processes_writing_one_path_at_once_both_succeed_and_leave_one_whole_file(tmp_path):
  path, go = tmp_path / 'page.html', tmp_path / 'go'
  writers = [
    subprocess.Popen(
      [sys.executable, '-c', _WRITER, str(path), letter, str(go)],
      cwd=str(REPO),
      stderr=subprocess.PIPE,
      text=True,
    )
    for letter in 'ab'
  ]
  time.sleep(0.5)  # Both started (the interpreter and the import) before either writes.
  go.touch()
  for w in writers:
    _, err = w.communicate(timeout=120)
    assert w.returncode == 0, err
  text = path.read_text()
  assert text in ('a' * 200_000, 'b' * 200_000)
  assert sorted(p.name for p in tmp_path.iterdir()) == ['go', 'page.html']


def test_the_mode_of_an_existing_file_is_kept(tmp_path):
  path = tmp_path / 'config.json'
  path.write_text('old')
  os.chmod(path, 0o640)
  with files.atomic_write(str(path)) as f:
    f.write('new')
  assert path.read_text() == 'new'
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path):
  umask = os.umask(0o027)
  try:
    with files.atomic_write(str(tmp_path / 'new.wav'), 'wb') as f:
      f.write(b'RIFF')
  finally:
    os.umask(umask)
  assert stat.S_IMODE(os.stat(tmp_path / 'new.wav').st_mode) == 0o640


def test_a_failure_inside_the_block_leaves_the_old_file_and_no_temporary_file(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  path.write_text('old\n')
  with pytest.raises(RuntimeError, match='disk full'):
    with files.atomic_write(str(path)) as f:
      f.write('half of the new')
      raise RuntimeError('disk full')
  assert path.read_text() == 'old\n'
  assert [p.name for p in tmp_path.iterdir()] == ['metrics.jsonl']


def test_a_bad_mode_is_refused(tmp_path):
  with pytest.raises(ValueError, match='use "w" or "wb"'):
    with files.atomic_write(str(tmp_path / 'x'), 'a'):
      pass


def test_stale_temporary_files_of_dead_writers_are_removed(tmp_path):
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()
  stale = tmp_path / f'.s0_00000.wav.{dead.pid}.k2j_8x.tmp'
  live = tmp_path / f'.s1_00000.wav.{os.getpid()}.ab12cd.tmp'
  data = tmp_path / 's2_00000.wav'
  for p in (stale, live, data):
    p.write_bytes(b'x')
  assert files.remove_stale_temps(str(tmp_path)) == [str(stale)]
  assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, data.name])
