"""Minutes-long clips in constant memory: samplernn-generate streams every chunk to disk.

Run as the user runs it, in a process of its own: peak RSS of a 60 s clip against a 5 s one,
and SIGTERM at a random moment leaves a valid file of every chunk written so far.
"""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from samplernn_jax import checkpoint
from samplernn_jax import model as model_lib
from tests.conftest import REPO
from tests.conftest import load_config
from tests.conftest import random_params

pytestmark = pytest.mark.slow

RATE = 8000  # configs/tiny.py
CHUNK = 4096  # Samples per compiled call: about half a second at 8 kHz.
# What may grow between 5 s and 60 s: the scores file, the progress bar, and scoring the
# clip, which reads it back (60 s at 8 kHz as float32 is 2 MB; the score's features, a few
# times that). Holding the clip in memory as the sampler once did cost 16 bytes per sample:
# 7.7 MB more for one 60 s sequence, 61 MB for eight. Measured: 391 MiB at 5 s, 413 MiB at 60 s.
MARGIN_BYTES = 32 * 2**20


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp('long') / 'run'
  config = load_config('tiny')
  config.generate.chunk_size = CHUNK
  config.generate.max_silence = 0  # Random parameters: their silence is not the subject.
  checkpoint.save_params(str(path), 1, random_params(model_lib.from_config(config.model)), config)
  return path


def command(run_dir, output, seconds, num_seqs=8):
  return [
    sys.executable,
    '-m',
    'samplernn_jax.commands.generate',
    f'--workdir={run_dir}',
    f'--output={output}',
    f'--duration={seconds}',
    f'--num_seqs={num_seqs}',
    '--compilation_cache_dir=',
  ]


def run_to_the_end(args) -> tuple:
  """``(exit status, peak RSS in bytes)`` of the command in a process of its own."""
  child = subprocess.Popen(args, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  _, status, usage = os.wait4(child.pid, 0)
  child.returncode = os.waitstatus_to_exitcode(status)
  stderr = child.stderr.read().decode()
  child.stderr.close()
  assert child.returncode == 0, stderr
  return child.returncode, usage.ru_maxrss * 1024  # Linux reports kilobytes.


def test_a_60_s_clip_takes_the_memory_of_a_5_s_one(run_dir, tmp_path):
  _, short = run_to_the_end(command(run_dir, tmp_path / 'short' / 'c.wav', 5))
  _, long = run_to_the_end(command(run_dir, tmp_path / 'long' / 'c.wav', 60))
  print(f'peak RSS: 5 s {short / 2**20:.0f} MiB, 60 s {long / 2**20:.0f} MiB')
  assert long - short <= MARGIN_BYTES, (short / 2**20, long / 2**20)
  frames = [sf.info(p).frames for p in sorted((tmp_path / 'long').glob('c_e=1(*)_t=*.wav'))]
  assert frames == [60 * RATE] * 8


def test_sigterm_at_a_random_moment_leaves_every_written_chunk_in_a_valid_file(run_dir, tmp_path):
  whole = tmp_path / 'whole'
  whole.mkdir()
  run_to_the_end(command(run_dir, whole / 'c.wav', 60, num_seqs=2))
  out = tmp_path / 'stopped'
  out.mkdir()
  child = subprocess.Popen(
    command(run_dir, out / 'c.wav', 60, num_seqs=2),
    cwd=str(REPO),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
  )
  try:
    # Wait for the first samples on disk, then a random moment of the sampling.
    deadline = time.time() + 300
    while time.time() < deadline and child.poll() is None:
      partial = list(out.glob('.generating-*/*.wav'))
      if partial and all(p.stat().st_size > 44 for p in partial):
        break
      time.sleep(0.05)
    time.sleep(random.Random(os.getpid()).uniform(0.0, 3.0))
    child.send_signal(signal.SIGTERM)
    stderr = child.communicate(timeout=120)[1].decode()
  finally:
    child.kill()
  assert child.returncode == 128 + signal.SIGTERM, stderr
  (scratch,) = out.glob('.generating-*')
  assert str(scratch) in stderr  # The message says where the partial clips are.
  for path in sorted(scratch.glob('*.wav')):
    info = sf.info(path)  # A valid header...
    assert 0 < info.frames < 60 * RATE
    assert info.frames % 8 == 0  # ...of whole frames, as the chunks are written...
    partial = sf.read(path, dtype='int16')[0]
    complete = sf.read(whole / path.name, dtype='int16')[0]
    assert partial.shape == (info.frames,)  # ...that says how much the data holds...
    np.testing.assert_array_equal(partial, complete[: info.frames])  # ...and every sample.
  assert not list(out.glob('c_e=1*.wav'))  # Nothing partial in the clips' place.
