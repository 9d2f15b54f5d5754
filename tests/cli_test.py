"""The commands as a user meets them: --help lists their own flags, every misuse ends
with one short message (no traceback) naming the flag or file, and a non-zero status.

All subprocesses of the module run once, side by side, in a module fixture; the tests
read their results.
"""

import concurrent.futures
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from samplernn_jax import checkpoint
from samplernn_jax import model as model_lib
from samplernn_jax import workdir as workdir_lib
from tests.conftest import load_config
from tests.conftest import prism_case
from tests.conftest import random_params

REPO = pathlib.Path(__file__).resolve().parents[1]
# Each in its own process: two command modules in one would both define --workdir.
MODULES = {
  'samplernn-fetch': 'fetch',
  'samplernn-prepare': 'prepare',
  'samplernn-train': 'train',
  'samplernn-generate': 'generate',
  'samplernn-import-prism': 'import_prism',
  'samplernn-score': 'score',
  'samplernn-gallery': 'gallery',
}
# A command's own flags, which --help must list.
OWN_FLAGS = {
  'samplernn-fetch': ['--batch_file', '--enable_file_urls', '--output_dir'],
  'samplernn-prepare': ['--input', '--chunk_length_ms', '--num_workers'],
  'samplernn-train': ['--config', '--workdir', '--data_dir', '--resume_from'],
  'samplernn-generate': ['--workdir', '--num_seqs', '--duration', '--overwrite'],
  'samplernn-import-prism': ['--checkpoint', '--config', '--workdir'],
  'samplernn-score': ['--reference'],
  'samplernn-gallery': ['--workdir', '--reference'],
}
OPEN_FILES = 4096  # The subprocesses' open-file limit, so that --num_seqs=100000 is refused.


def command(name: str) -> list:
  """The installed console script, or the module it runs (a checkout without install)."""
  script = os.path.join(os.path.dirname(sys.executable), name)
  if os.path.exists(script):
    return [script]
  return [sys.executable, '-m', f'samplernn_jax.commands.{MODULES[name]}']


def run_command(argv: list, cwd: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu')
  # The limit is set by a shell, not a preexec_fn: that would fork this (JAX) process.
  shell = ['/bin/sh', '-c', f'ulimit -n {OPEN_FILES} 2>/dev/null; exec "$0" "$@"']
  return subprocess.run(shell + argv, capture_output=True, text=True, timeout=240, cwd=cwd, env=env)


def readonly_dir(tmp: pathlib.Path) -> str:
  """A folder this process cannot write to (root ignores permissions, but not /sys)."""
  path = tmp / 'readonly'
  path.mkdir()
  path.chmod(0o555)
  try:
    (path / 'probe').touch()
  except OSError:
    return str(path)
  (path / 'probe').unlink()
  return '/sys'


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
  """A tiny checkpoint, a damaged copy, a few audio files and a read-only folder."""
  tmp = tmp_path_factory.mktemp('cli')
  config = load_config('tiny')
  params = random_params(model_lib.from_config(config.model))
  run = tmp / 'run'
  for step in (1, 2):
    checkpoint.save_params(str(run), step, params, config)
  damaged = tmp / 'damaged'
  shutil.copytree(run, damaged)
  (damaged / workdir_lib.CHECKPOINTS / '2' / 'config' / 'metadata').write_text('{"model": ')
  audio = tmp / 'audio'
  audio.mkdir()
  sf.write(audio / 'a.wav', np.zeros(4000, np.float32), 8000)
  existing = tmp / 'out' / 'clip_e=2_t=0.95.wav'
  existing.parent.mkdir()
  existing.write_bytes(b'an earlier clip')
  return {
    'tmp': tmp,
    'run': run,
    'damaged': damaged,
    'audio': audio,
    'readonly': readonly_dir(tmp),
    'existing': existing,
    'prism': prism_case('gru_mulaw'),
  }


def misuses(t: dict) -> dict:
  """id -> (command, args, text the message must hold)."""
  tmp, run, ro, fixture = t['tmp'], t['run'], t['readonly'], t['prism']
  return {
    'prepare-missing-input': ('samplernn-prepare', ['--input=/nonexistent'], '/nonexistent'),
    'prepare-chunk-length': (
      'samplernn-prepare',
      [f'--input={t["audio"]}', '--chunk_length_ms=-1'],
      '--chunk_length_ms',
    ),
    'prepare-sample-rate': (
      'samplernn-prepare',
      [f'--input={t["audio"]}', '--sample_rate=0'],
      '--sample_rate',
    ),
    'prepare-overlap': (
      'samplernn-prepare',
      [f'--input={t["audio"]}', '--overlap_ms=9000'],
      '--overlap_ms',
    ),
    'prepare-readonly': (
      'samplernn-prepare',
      [f'--input={t["audio"]}', f'--output_dir={ro}/chunks'],
      ro,
    ),
    'prepare-no-chunks': (
      'samplernn-prepare',
      [f'--input={t["audio"]}', f'--output_dir={tmp}/chunks'],
      'no chunk',
    ),
    'train-no-workdir': ('samplernn-train', [], '--workdir'),
    'train-missing-config': (
      'samplernn-train',
      [f'--workdir={tmp}/t1', '--config=configs/nonexistent.py'],
      'configs/nonexistent.py',
    ),
    'train-config-typo': (
      'samplernn-train',
      [f'--workdir={tmp}/t2', '--config.model.dimm=3'],
      '--config.model.dimm',
    ),
    'train-batch-size': (
      'samplernn-train',
      [f'--workdir={tmp}/t3', '--config=configs/tiny.py', '--config.train.batch_size=-1'],
      'batch_size',
    ),
    'fetch-batch-file': ('samplernn-fetch', ['--batch_file=/missing'], '--batch_file=/missing'),
    'generate-infinite': (
      'samplernn-generate',
      [f'--workdir={run}', '--duration=inf', f'--output={tmp}/g/infinite.wav'],
      '--duration',
    ),
    'generate-readonly': ('samplernn-generate', [f'--workdir={run}', f'--output={ro}/a.wav'], ro),
    'generate-open-files': (
      'samplernn-generate',
      [f'--workdir={run}', '--num_seqs=100000', f'--output={tmp}/g/files.wav'],
      'ulimit -n',
    ),
    'generate-memory': (
      'samplernn-generate',
      [f'--workdir={run}', '--duration=1e12', f'--output={tmp}/g/memory.wav'],
      '--duration',
    ),
    'generate-existing': (
      'samplernn-generate',
      [f'--workdir={run}', f'--output={tmp}/out/clip.wav'],
      '--overwrite',
    ),
    'generate-damaged': (
      'samplernn-generate',
      [f'--workdir={t["damaged"]}', f'--output={tmp}/g/damaged.wav'],
      '--step=1',
    ),
    'import-missing': (
      'samplernn-import-prism',
      [
        '--checkpoint=/nope/model.ckpt-1',
        f'--config={fixture}/prism.config.json',
        f'--workdir={tmp}/imported',
      ],
      '/nope/model.ckpt-1',
    ),
    'score-no-reference': (
      'samplernn-score',
      [f'--reference={tmp}/nowhere', str(t['audio'])],
      'nowhere: not a directory',
    ),
    'score-no-files': ('samplernn-score', [f'--reference={t["audio"]}'], 'audio files'),
    'score-bad-file': (
      'samplernn-score',
      [f'--reference={t["audio"]}', f'{tmp}/out/clip_e=2_t=0.95.wav'],
      'clip_e=2_t=0.95.wav: not readable audio',
    ),
    'gallery-no-workdir': (
      'samplernn-gallery',
      [f'--workdir={tmp}/nowhere'],
      'nowhere: no such workdir',
    ),
    # PRiSM's flags, typed by habit: this project's name for each, not absl's guess.
    'train-prism-epochs': (
      'samplernn-train',
      [f'--workdir={tmp}/t4', '--num_epochs=3'],
      "--num_epochs is PRiSM's flag; here use --config.train.num_epochs=N",
    ),
    'train-prism-resume': (
      'samplernn-train',
      [f'--workdir={tmp}/t5', '--resume'],
      'always resumes',
    ),
    'generate-prism-dur': (
      'samplernn-generate',
      [f'--workdir={run}', '--dur=3'],
      '--duration=SECONDS',
    ),
  }


@pytest.fixture(scope='module')
def results(tree):
  jobs = {f'help-{name}': command(name) + ['--help'] for name in MODULES}
  jobs.update({f'version-{name}': command(name) + ['--version'] for name in MODULES})
  jobs.update({key: command(name) + args for key, (name, args, _) in misuses(tree).items()})
  jobs['show-config'] = command('samplernn-train') + [
    f'--workdir={tree["tmp"]}/shown',
    '--config=configs/tiny.py',
    '--show_config',
  ]
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    futures = {key: pool.submit(run_command, argv, str(REPO)) for key, argv in jobs.items()}
    return {key: f.result() for key, f in futures.items()}


@pytest.mark.parametrize('name', sorted(MODULES))
def test_help_lists_the_commands_own_flags(results, name):
  out = results[f'help-{name}']
  assert out.returncode == 0, out.stderr
  for flag in OWN_FLAGS[name]:
    # Boolean flags are listed as --[no]name.
    assert re.search(rf'--(\[no\])?{flag[2:]}:', out.stdout), (flag, out.stdout)
  # Not the ~100 flags of the libraries (those stay under --helpfull).
  for foreign in ('orbax', '--jax_', '--xla_', '--verbosity', '--grain_'):
    assert foreign not in out.stdout, (foreign, out.stdout)


@pytest.mark.parametrize('name', sorted(MODULES))
def test_version_needs_no_other_flag(results, name):
  import samplernn_jax  # pylint: disable=g-import-not-at-top

  out = results[f'version-{name}']
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == f'{name} {samplernn_jax.__version__}'
  assert samplernn_jax.__version__ != '0+unknown'  # Installed: the metadata's version.


@pytest.mark.parametrize(
  'key', sorted(misuses(dict.fromkeys(('tmp', 'run', 'readonly', 'audio', 'damaged', 'prism'), '')))
)
def test_misuse_is_one_short_message(results, tree, key):
  _, _, expected = misuses(tree)[key]
  out = results[key]
  lines = [line for line in out.stderr.splitlines() if line.strip()]
  assert out.returncode != 0, (out.stdout, out.stderr)
  assert 'Traceback' not in out.stderr, out.stderr
  assert 1 <= len(lines) <= 3, out.stderr
  assert expected in out.stderr, out.stderr
  # The one noise every command used to print on a host without a TPU.
  assert 'libtpu' not in out.stderr


def test_show_config_lists_every_field_with_its_meaning(results, tree):
  out = results['show-config']
  assert out.returncode == 0, out.stderr
  assert '--config.model.dim=16  # Width of every RNN' in out.stdout  # tiny's value.
  assert '--config.model.frame_sizes=2,8  #' in out.stdout
  assert '--config.train.num_epochs=2  # Passes over the training files.' in out.stdout
  assert not os.path.exists(tree['tmp'] / 'shown')  # Nothing is trained or written.


def test_misuse_leaves_nothing_behind(results, tree):
  # A bad config stops before the workdir exists; an existing clip is untouched.
  assert not os.path.exists(tree['tmp'] / 't1')
  assert not os.path.exists(tree['tmp'] / 't3')
  assert tree['existing'].read_bytes() == b'an earlier clip'
  assert not [n for n in os.listdir(tree['tmp'] / 'out') if n.startswith('.generating')]
  # The generate misuses run side by side, so each has its own clip names (a shared name
  # would be claimed by whichever starts first).
  assert not os.path.exists(tree['tmp'] / 'g') or not [
    n for n in os.listdir(tree['tmp'] / 'g') if n.endswith('.wav')
  ]


def test_system_errors_are_one_line_with_the_path_and_what_to_do():
  import errno  # pylint: disable=g-import-not-at-top
  import logging  # pylint: disable=g-import-not-at-top

  from samplernn_jax.commands import cli  # pylint: disable=g-import-not-at-top

  # Orbax wraps a full disk in TensorStore's text (what a full disk gave in a trial).
  full = ValueError(
    'RESOURCE_EXHAUSTED: Error writing "x/0.0" in OCDBT database at local '
    'file "/runs/a/checkpoints/100.tmp/params/": Failed writing: '
    '"/runs/a/checkpoints/100.tmp/params/d/2f47": Failed to write 176375 '
    "bytes to file 30: No space left on device [os_error_code='28']"
  )
  assert cli.describe(full) == (
    '/runs/a/checkpoints/100.tmp/params/: No space left on '
    'device; free some space or choose a folder on another disk.'
  )
  try:
    try:
      raise OSError(errno.EROFS, os.strerror(errno.EROFS), '/mnt/ro/clip.wav')
    except OSError as e:
      raise RuntimeError('save failed') from e
  except RuntimeError as e:
    assert cli.describe(e).startswith('/mnt/ro/clip.wav: Read-only file system; ')
  # Orbax's background-thread copies of that error are dropped; its other errors are not.
  keep = cli._DropRecords()  # pylint: disable=protected-access

  def record(msg, level=logging.ERROR, path='/x/orbax/checkpoint/future.py'):
    return logging.LogRecord('absl', level, path, 1, msg, None, None)

  assert not keep.filter(record(str(full)))
  assert keep.filter(record('some other failure'))
  assert not keep.filter(record('Saving checkpoint', logging.INFO))
  assert not keep.filter(
    record(
      "Unable to initialize backend 'tpu': no libtpu", logging.INFO, '/x/jax/_src/xla_bridge.py'
    )
  )
  assert keep.filter(record('Resumed', logging.INFO, '/x/samplernn_jax/train.py'))
