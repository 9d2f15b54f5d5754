"""Multi-process launches: the decision to join, and a SLURM-style launch on this machine."""

import os
import pathlib
import socket
import subprocess
import sys

import pytest

from samplernn_jax import distributed

REPO = pathlib.Path(__file__).resolve().parents[1]
# What a cluster launcher sets, for each kind JAX detects; cleared so the host's own is not seen.
LAUNCHER_VARIABLES = (
  'SLURM_JOB_ID',
  'SLURM_STEP_NODELIST',
  'SLURM_NTASKS',
  'SLURM_PROCID',
  'SLURM_LOCALID',
  'OMPI_MCA_orte_hnp_uri',
  'KUBERNETES_SERVICE_HOST',
)


def slurm_env(task: int, tasks: int = 2) -> dict:
  return {
    'SLURM_JOB_ID': '4242',
    'SLURM_STEP_NODELIST': 'localhost',
    'SLURM_NTASKS': str(tasks),
    'SLURM_PROCID': str(task),
    'SLURM_LOCALID': str(task),
  }


@pytest.fixture
def no_launcher(monkeypatch):
  for name in LAUNCHER_VARIABLES:
    monkeypatch.delenv(name, raising=False)
  return monkeypatch


def test_jax_detects_a_slurm_launch(no_launcher):
  assert distributed.detected_cluster() is None
  for k, v in slurm_env(1, tasks=4).items():
    no_launcher.setenv(k, v)
  assert distributed.detected_cluster() == distributed.Cluster('slurm', 4)


@pytest.mark.parametrize(
  'mode,coordinator,num_processes,cluster,joins',
  [
    ('auto', None, None, None, False),  # A plain run.
    ('auto', None, None, distributed.Cluster('slurm', 1), False),  # sbatch with one task.
    ('auto', None, None, distributed.Cluster('slurm', 2), True),  # srun with two tasks.
    ('auto', None, None, distributed.Cluster('ompi', 8), True),
    ('auto', 'host0:1234', None, None, True),  # The explicit flags, as before.
    ('auto', None, 2, None, True),
    ('off', None, None, distributed.Cluster('slurm', 2), False),
    ('on', None, None, None, True),
  ],
)
def test_when_to_join(mode, coordinator, num_processes, cluster, joins):
  assert distributed.should_initialize(mode, coordinator, num_processes, cluster) is joins


def test_unknown_mode_is_refused():
  with pytest.raises(ValueError, match="--distributed='maybe'"):
    distributed.should_initialize('maybe')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_srun_style_launch_trains_one_run_in_two_processes(tmp_path):
  """Two ``samplernn-train`` processes with SLURM's variables, as ``srun -n 2`` starts them:
  JAX's detection joins them into one run of 2 devices (without it each trained alone)."""
  from samplernn_jax.corpus import demo_corpus  # pylint: disable=g-import-not-at-top

  corpus = tmp_path / 'corpus'
  demo_corpus.synthesize(str(corpus), sample_rate=8000, num_files=8, seconds=0.3)
  port = str(_free_port())
  base = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
  procs = []
  for task in range(2):
    env = dict(
      base,
      **slurm_env(task),
      JAX_COORDINATOR_PORT=port,
      JAX_PLATFORMS='cpu',
      XLA_FLAGS='',
      PYTHONPATH=str(REPO),
    )
    procs.append(
      subprocess.Popen(
        [
          sys.executable,
          '-m',
          'samplernn_jax.commands.train',
          f'--workdir={tmp_path}/run',
          f'--data_dir={corpus}',
          '--config=configs/tiny.py',
          '--config.train.num_epochs=1',
          '--config.train.log_every_steps=0',
          '--config.generate.max_generate_per_epoch=0',
          '--compilation_cache_dir=',
        ],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
      )
    )
  outs = []
  for p in procs:
    try:
      outs.append(p.communicate(timeout=400))
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      pytest.fail('the two-process launch timed out')
  for task, (p, (stdout, stderr)) in enumerate(zip(procs, outs)):
    assert p.returncode == 0, stderr[-4000:]
    assert f'process {task} of 2 (slurm detected by JAX); 1 local / 2 global devices' in stdout
  assert os.listdir(tmp_path / 'run' / 'checkpoints')  # One run, written by process 0.
