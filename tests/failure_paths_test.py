"""What happens when things go wrong: nothing existing is overwritten, sizes are refused up
front, damaged checkpoints are named and skipped, bad files cost only themselves, killed
runs leave nothing behind, and a resumed run logs every step once."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from samplernn_jax import checkpoint
from samplernn_jax import input_pipeline
from samplernn_jax import model as model_lib
from samplernn_jax import reporting
from samplernn_jax import sampler as sampler_lib
from samplernn_jax import train
from samplernn_jax import workdir as workdir_lib
from samplernn_jax.corpus import demo_corpus
from samplernn_jax.corpus import prepare
from samplernn_jax.listening import clips
from tests.conftest import alive
from tests.conftest import children
from tests.conftest import load_config
from tests.conftest import random_params

REPO = pathlib.Path(__file__).resolve().parents[1]
DURATION = 0.012  # tiny: 96 samples at 8 kHz.


def tiny_config():
  config = load_config('tiny')
  config.generate.chunk_size = 48
  return config


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  """Parameters-only checkpoints at steps 1 and 2 (what generation reads)."""
  path = tmp_path_factory.mktemp('gen') / 'run'
  config = tiny_config()
  params = random_params(model_lib.from_config(config.model))
  for step in (1, 2):
    checkpoint.save_params(str(path), step, params, config)
  return path


# ---------------------------------------------------------------------------------------
# Generation: overwrite, sizes, damaged checkpoints (items 8-10)
# ---------------------------------------------------------------------------------------


def test_existing_clips_are_kept_until_their_replacement_is_complete(
  run_dir, tmp_path, monkeypatch
):
  out = str(tmp_path / 'clip.wav')
  target = tmp_path / 'clip_e=2_t=0.95.wav'
  target.write_bytes(b'an earlier clip')
  with pytest.raises(ValueError, match='clip_e=2_t=0.95.wav exists; pass --overwrite'):
    clips.generate_files(str(run_dir), out, duration=DURATION, progress=False)
  assert target.read_bytes() == b'an earlier clip'

  # A run that fails after its first chunk leaves the old clip and keeps the partial one.
  real = sampler_lib.Sampler.generate

  def fail_after_first_chunk(self, *args, callback=None, **kwargs):
    def stop(levels, start):
      callback(levels, start)
      raise RuntimeError('out of memory')

    return real(self, *args, callback=stop, **kwargs)

  monkeypatch.setattr(sampler_lib.Sampler, 'generate', fail_after_first_chunk)
  with pytest.raises(RuntimeError):
    clips.generate_files(str(run_dir), out, duration=DURATION, progress=False, overwrite=True)
  assert target.read_bytes() == b'an earlier clip'
  (scratch,) = [p for p in tmp_path.iterdir() if p.name.startswith('.generating-')]
  assert sf.info(str(scratch / target.name)).frames == 48
  shutil.rmtree(scratch)

  monkeypatch.setattr(sampler_lib.Sampler, 'generate', real)
  result = clips.generate_files(
    str(run_dir), out, duration=DURATION, progress=False, overwrite=True
  )
  assert result['paths'] == [str(target)] and sf.info(str(target)).frames == 96
  assert not [p for p in tmp_path.iterdir() if p.name.startswith('.generating-')]
  assert result['x_real_time'] > 0


def test_sizes_that_cannot_fit_are_refused_before_anything_starts(tmp_path):
  with pytest.raises(ValueError, match=r'--num_seqs=10000000 .*ulimit -n'):
    clips.check_sizes(10_000_000, 100, str(tmp_path))
  with pytest.raises(ValueError, match='of memory.*lower --num_seqs or --duration'):
    clips.check_sizes(1, 10**15, str(tmp_path))
  clips.check_sizes(4, 8000, str(tmp_path))  # A small run passes.
  with pytest.raises(ValueError, match='finite'):
    clips.generate_files(str(tmp_path), str(tmp_path / 'a.wav'), duration=float('inf'))


def _damage(workdir: pathlib.Path, step: int, how: str) -> None:
  step_dir = workdir / workdir_lib.CHECKPOINTS / str(step)
  if how == 'truncated':
    arrays = [p for p in (step_dir / 'params').rglob('*') if p.is_file() and p.parent.name == 'd']
    biggest = max(arrays, key=lambda p: p.stat().st_size)
    with open(biggest, 'r+b') as f:
      f.truncate(biggest.stat().st_size // 3)
  elif how == 'config_json':
    (step_dir / 'config' / 'metadata').write_text('{"model": ')
  elif how == 'missing_item':
    shutil.rmtree(step_dir / 'params')


@pytest.mark.parametrize(
  'how,item', [('truncated', 'params'), ('config_json', 'config'), ('missing_item', 'params')]
)
def test_generation_names_a_damaged_checkpoint_and_the_steps_to_use(run_dir, tmp_path, how, item):
  workdir = tmp_path / 'run'
  shutil.copytree(run_dir, workdir)
  _damage(workdir, 2, how)
  with pytest.raises(checkpoint.CheckpointError) as e:
    checkpoint.restore_params(str(workdir))
  message = str(e.value)
  assert f'checkpoints/2/{item}' in message, message
  assert 'intact checkpoints: [1]; pass --step=1' in message, message
  assert checkpoint.restore_params(str(workdir), 1)[2] == 1


# ---------------------------------------------------------------------------------------
# Training: fallback past a damaged checkpoint, metrics once, a finished run (10, 16, 7)
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def compilation_cache(tmp_path_factory):
  """Resumed runs compile the same steps again; a persistent cache makes that a read."""
  import jax  # pylint: disable=g-import-not-at-top

  old = (
    jax.config.jax_compilation_cache_dir,
    jax.config.jax_persistent_cache_min_compile_time_secs,
  )
  jax.config.update('jax_compilation_cache_dir', str(tmp_path_factory.mktemp('jax_cache')))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  yield
  jax.config.update('jax_compilation_cache_dir', old[0])
  jax.config.update('jax_persistent_cache_min_compile_time_secs', old[1])


@pytest.fixture(scope='module')
def trained(tmp_path_factory, compilation_cache):  # pylint: disable=unused-argument
  """Two epochs of 20 steps on the tiny config, a log line every 5 steps."""
  root = tmp_path_factory.mktemp('train')
  corpus = str(root / 'corpus')
  demo_corpus.synthesize(corpus, sample_rate=8000, num_files=10, seconds=0.05)
  config = tiny_config()
  config.train.log_every_steps = 5
  config.generate.max_generate_per_epoch = 0
  workdir = root / 'run'
  train.train_and_evaluate(config, str(workdir), corpus)
  return config, corpus, workdir


@pytest.mark.parametrize(
  'how,item', [('truncated', 'params'), ('config_json', 'config'), ('missing_item', 'params')]
)
def test_training_falls_back_past_a_damaged_checkpoint_and_logs_each_step_once(
  trained, tmp_path, caplog, how, item
):
  config, corpus, done = trained
  steps = sorted(checkpoint.make_manager(str(done)).all_steps())
  assert len(steps) == 2
  workdir = tmp_path / 'run'
  shutil.copytree(done, workdir)
  _damage(workdir, steps[-1], how)
  # metrics.jsonl still holds the lost steps, as after a kill -9 past the last save.
  train.train_and_evaluate(config, str(workdir), corpus)
  assert any(
    f'checkpoints/{steps[-1]}/{item}' in r.getMessage()
    for r in caplog.records
    if r.levelname == 'WARNING'
  )
  assert (workdir / workdir_lib.BROKEN_CHECKPOINTS / str(steps[-1])).is_dir()
  records = workdir_lib.read_records(str(workdir))
  train_steps = [r['step'] for r in records if r['kind'] == 'train']
  assert len(train_steps) == len(set(train_steps)), train_steps
  expected = workdir_lib.read_records(str(done))
  assert len(records) == len(expected)
  np.testing.assert_allclose(
    [r['loss'] for r in records if 'loss' in r],
    [r['loss'] for r in expected if 'loss' in r],
    rtol=1e-5,
  )


def test_a_finished_run_says_so_and_how_to_train_longer(trained, tmp_path, capsys):
  config, corpus, done = trained
  workdir = tmp_path / 'run'
  shutil.copytree(done, workdir)
  before = (workdir / workdir_lib.METRICS).read_text()
  assert train.train_and_evaluate(config, str(workdir), corpus) == {}
  out = capsys.readouterr().out
  assert 'training is finished (2 of 2 epochs done)' in out
  assert '--config.train.num_epochs=3' in out
  assert (workdir / workdir_lib.METRICS).read_text() == before


def test_drop_records_after(tmp_path):
  path = tmp_path / workdir_lib.METRICS
  lines = [
    json.dumps({'kind': 'train', 'step': s, 'epoch': 1, 'loss': 1.0}) + '\n' for s in (5, 10, 15)
  ]
  path.write_text(''.join(lines) + '{"ste')  # Cut short by a kill.
  reporting.drop_records_after(str(tmp_path), 10)
  assert path.read_text() == ''.join(lines[:2])


# ---------------------------------------------------------------------------------------
# Data: bad files in --data_dir found before step 1 (item 15)
# ---------------------------------------------------------------------------------------


def test_bad_files_are_found_when_the_dataset_is_built(tmp_path):
  data = tmp_path / 'data'
  demo_corpus.synthesize(str(data), sample_rate=8000, num_files=10, seconds=0.05)
  sf.write(data / 'nan.wav', np.full(800, np.nan, np.float32), 8000, subtype='FLOAT')
  good = data / 'truncated.wav'
  sf.write(good, np.zeros(4000, np.float32), 8000, subtype='PCM_16')
  good.write_bytes(good.read_bytes()[:2000])
  config = tiny_config()
  config.data.val_frac = 0.0
  ds = input_pipeline.make_datasets(config, str(data), process_index=0, process_count=1)
  assert len(ds.train_files) == 10
  assert not [f for f in ds.train_files if 'nan' in f or 'truncated' in f]
  config.data.on_bad_file = 'stop'
  with pytest.raises(ValueError, match=r'(nan|truncated)\.wav: .*on_bad_file=skip'):
    input_pipeline.make_datasets(config, str(data), process_index=0, process_count=1)


# ---------------------------------------------------------------------------------------
# prepare: the same failures inline and in workers, exit reasons, clipping, kills (11-14)
# ---------------------------------------------------------------------------------------

SETTINGS = prepare.Settings(sample_rate=8000, chunk_length_ms=200, overlap_ms=0)


def _noise(seconds, amplitude=0.5, seed=0):
  rng = np.random.default_rng(seed)
  return rng.uniform(-amplitude, amplitude, int(seconds * 8000)).astype(np.float32)


def test_a_file_zoo_fails_the_same_inline_and_in_workers(tmp_path):
  src = tmp_path / 'src'
  src.mkdir()
  sf.write(src / 'good.wav', _noise(0.5), 8000)
  os.symlink('loop.wav', src / 'loop.wav')  # A symlink loop.
  os.symlink('nowhere.wav', src / 'dangling.wav')
  with open(os.path.join(os.fsencode(src), b'caf\xe9.wav'), 'wb') as f:  # Not UTF-8.
    f.write((src / 'good.wav').read_bytes())
  outcomes = []
  for workers, out in ((1, 'o1'), (2, 'o2')):
    results = prepare.prepare(
      [str(src)], str(tmp_path / out), SETTINGS, num_workers=workers, progress=False
    )
    outcomes.append({os.path.basename(r.path): r.status for r in results})
    print(prepare.summary(results, out))  # Printable with the non-UTF-8 name.
  assert outcomes[0] == outcomes[1]
  assert outcomes[0]['good.wav'] == 'done'
  assert outcomes[0]['loop.wav'] == outcomes[0]['dangling.wav'] == 'failed'


def test_exit_reasons_and_clipping(tmp_path):
  assert 'no audio files' in prepare.problem([])
  loud = _noise(0.5, amplitude=1.0)
  loud[::4] = 2.0  # A quarter of the samples beyond full scale, as a float file allows.
  sf.write(tmp_path / 'loud.wav', loud, 8000, subtype='FLOAT')
  results = prepare.prepare(
    [str(tmp_path / 'loud.wav')], str(tmp_path / 'out'), SETTINGS, progress=False
  )
  assert results[0].clipped == pytest.approx(0.25)
  assert 'loud.wav: 25% of samples' in prepare.summary(results, 'out')
  assert prepare.problem(results) is None
  short = prepare.prepare(
    [str(tmp_path / 'loud.wav')],
    str(tmp_path / 'out2'),
    prepare.Settings(sample_rate=8000, chunk_length_ms=5000, overlap_ms=0),
    progress=False,
  )
  assert 'no chunk was written' in prepare.problem(short)
  failed = [prepare.Result('x.wav', 'failed', reason='empty')] + results
  assert '1 of 2 files failed' in prepare.problem(failed)


@pytest.mark.skipif(not os.path.isdir('/proc'), reason='reads /proc')
def test_killed_prepare_leaves_no_workers_and_its_temporary_files_are_cleaned(tmp_path):
  src = tmp_path / 'src'
  src.mkdir()
  for i in range(40):
    sf.write(src / f's{i}.wav', _noise(3.0, seed=i), 8000)
  out = tmp_path / 'out'
  parent = subprocess.Popen(
    [
      sys.executable,
      '-c',
      'from samplernn_jax.commands import prepare; prepare.run()',
      f'--input={src}',
      f'--output_dir={out}',
      '--num_workers=2',
      '--chunk_length_ms=100',
      '--overlap_ms=0',
    ],
    cwd=str(REPO),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  deadline = time.time() + 60
  workers = []
  while time.time() < deadline and len(workers) < 2 and parent.poll() is None:
    time.sleep(0.1)
    workers = [p for p in children(parent.pid) if alive(p)]
  assert workers, 'prepare never started its workers'
  os.kill(parent.pid, signal.SIGKILL)
  parent.wait()
  deadline = time.time() + 10
  while time.time() < deadline and any(alive(p) for p in workers):
    time.sleep(0.1)
  assert not [p for p in workers if alive(p)]

  # A temporary file of a dead writer goes on the next run; a live writer's stays.
  out.mkdir(exist_ok=True)
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()
  stale = out / f'.s0_00000.wav.{dead.pid}.a1b2c3d4.tmp'
  live = out / f'.s1_00000.wav.{os.getpid()}.e5f6g7h8.tmp'
  stale.write_bytes(b'x')
  live.write_bytes(b'x')
  prepare.prepare([str(src / 's0.wav')], str(out), SETTINGS, progress=False)
  assert not stale.exists() and live.exists()


def test_a_resume_over_changed_files_says_the_epochs_are_replanned(tmp_path, caplog):
  class Files:  # What _note_data_change reads of a Datasets.
    def __init__(self, paths):
      self.train_files, self.val_files = tuple(paths), ()

  paths = []
  for i in range(3):
    paths.append(str(tmp_path / f'{i}.wav'))
    sf.write(paths[-1], np.zeros(100, np.float32), 8000)
  note = train._note_data_change  # pylint: disable=protected-access
  note(str(tmp_path), Files(paths), resumed=False)
  note(str(tmp_path), Files(paths), resumed=True)
  assert 're-planned' not in caplog.text
  note(str(tmp_path), Files(paths[:2]), resumed=True)
  assert '3 -> 2 training' in caplog.text and 're-planned' in caplog.text
