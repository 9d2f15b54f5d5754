"""scripts/gpu_check.sh: its usage, and its dry run (the same steps on the CPU, tiny shapes)."""

import importlib.util
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

SCRIPT = str(REPO / 'scripts' / 'gpu_check.sh')


def _run(*args, timeout=120):
  env = dict(os.environ, PYTHON=sys.executable)
  return subprocess.run(
    [SCRIPT, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
  )


def test_help_and_usage_errors(tmp_path):
  proc = _run('--help')
  assert proc.returncode == 0 and '--dry_run' in proc.stdout and '--wheels=' in proc.stdout
  proc = _run('--dry_run')
  assert proc.returncode == 2 and 'no --out=DIR' in proc.stderr
  proc = _run(f'--out={tmp_path}', f'--wheels={tmp_path / "none"}')
  assert proc.returncode == 2 and 'is not a folder' in proc.stderr


@pytest.mark.skipif(
  importlib.util.find_spec('jax_cuda12_plugin') is not None,
  reason='a GPU host: the real check would run',
)
def test_without_a_gpu_the_check_records_the_environment_and_stops(tmp_path):
  proc = _run(f'--out={tmp_path}')
  assert proc.returncode == 2 and 'JAX sees no GPU' in proc.stderr
  summary = (tmp_path / 'SUMMARY.md').read_text()
  assert '| JAX environment | ok |' in summary and 'nothing else ran' in summary
  assert not list((tmp_path / 'bench').iterdir())


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get('CI') == 'true', reason='.ci/run runs the dry run itself')
def test_dry_run_takes_every_step_in_under_a_minute(tmp_path):
  start = time.monotonic()
  proc = _run('--dry_run', f'--out={tmp_path}')
  seconds = time.monotonic() - start
  assert proc.returncode == 0, proc.stdout + proc.stderr
  summary = (tmp_path / 'SUMMARY.md').read_text()
  for step in (
    'JAX environment',
    'pytest wavefront_test',
    'tiny train, command buffers +WHILE,+CONDITIONAL',
    'tiny train, command buffers -WHILE,-CONDITIONAL',
  ):
    assert f'{step} | ok |' in summary, summary
  assert 'tiny_train_cmdbuf_while' in summary and 'tiny_train_cmdbuf_no_while' in summary
  assert (tmp_path / 'env' / 'jax.txt').read_text().strip()
  assert seconds < 60, summary
