"""The package as pip installs it: every folder shipped, and a wheel that works from anywhere."""

import os
import pathlib
import subprocess
import sys
import sysconfig

import pytest
import tomllib

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_the_wheel_lists_every_package_folder():
  setuptools = tomllib.loads((REPO / 'pyproject.toml').read_text())['tool']['setuptools']
  listed = set(setuptools['packages'])
  found = {
    '.'.join(p.relative_to(REPO).parts)
    for p in (REPO / 'samplernn_jax').rglob('*')
    if p.is_dir() and p.name != '__pycache__' and any(p.glob('*.py'))
  }
  found |= {
    'samplernn_jax.listening.templates',
    'samplernn_jax.configs',
    'samplernn_jax.configs.spaces',
  }
  assert found | {'samplernn_jax'} == listed
  assert setuptools['package-dir']['samplernn_jax.configs'] == 'configs'


def _run(argv, cwd, **kw):
  proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, **kw)
  assert proc.returncode == 0, (argv, proc.stdout[-2000:], proc.stderr[-4000:])
  return proc


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_trains_and_generates_from_an_empty_folder(tmp_path):
  wheels = tmp_path / 'wheels'
  _run(
    [sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '-w', str(wheels), str(REPO)],
    cwd=tmp_path,
  )
  (wheel,) = wheels.glob('samplernn_jax-*.whl')
  venv = tmp_path / 'venv'
  _run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], cwd=tmp_path)
  python = str(venv / 'bin' / 'python')
  site = _run(
    [python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'], cwd=tmp_path
  ).stdout.strip()
  # The dependencies (and pip) come from this environment's folder, appended after the fresh
  # venv's own: its .pth files (this checkout's editable install) are not read from there.
  pathlib.Path(site, 'dependencies.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
  _run(
    [python, '-m', 'pip', 'install', '-q', '--no-deps', '--ignore-installed', str(wheel)],
    cwd=tmp_path,
  )
  empty = tmp_path / 'empty'
  empty.mkdir()
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env.update(JAX_PLATFORMS='cpu')
  where = _run(
    [python, '-c', 'import samplernn_jax; print(samplernn_jax.__file__)'], cwd=empty, env=env
  ).stdout.strip()
  assert where.startswith(site), where  # The wheel's copy, not this checkout.
  _run(
    [
      python,
      '-c',
      'from samplernn_jax.corpus import demo_corpus; '
      "demo_corpus.synthesize('data', sample_rate=8000, num_files=8, seconds=0.3)",
    ],
    cwd=empty,
    env=env,
  )
  bin_dir = venv / 'bin'
  _run(
    [
      str(bin_dir / 'samplernn-train'),
      '--workdir=run',
      '--data_dir=data',
      '--config=tiny',
      '--config.train.num_epochs=1',
      '--config.generate.max_generate_per_epoch=0',
      '--compilation_cache_dir=',
    ],
    cwd=empty,
    env=env,
  )
  _run(
    [
      str(bin_dir / 'samplernn-generate'),
      '--workdir=run',
      '--output=clips/a.wav',
      '--duration=0.05',
      '--compilation_cache_dir=',
    ],
    cwd=empty,
    env=env,
  )
  assert [n for n in os.listdir(empty / 'clips') if n.endswith('.wav')]
  assert (
    'samplernn-train 0.1.0'
    in _run([str(bin_dir / 'samplernn-train'), '--version'], cwd=empty, env=env).stdout
  )
