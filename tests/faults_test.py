"""Issue 21's fault and bad-input cases, one test per item: hostile workdir files, two runs
at once, kills, full disks, damaged derived files. Each failed on the code before its fix."""

import contextlib
import errno
import io
import json
import logging
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from samplernn_jax import checkpoint
from samplernn_jax import files
from samplernn_jax import input_pipeline
from samplernn_jax import model as model_lib
from samplernn_jax import reporting
from samplernn_jax import sampler as sampler_lib
from samplernn_jax import train
from samplernn_jax import workdir as workdir_lib
from samplernn_jax.commands import cli
from samplernn_jax.corpus import demo_corpus
from samplernn_jax.corpus import prepare
from samplernn_jax.listening import clip_score
from samplernn_jax.listening import clips
from samplernn_jax.listening import gallery
from tests.conftest import alive
from tests.conftest import children
from tests.conftest import load_config
from tests.conftest import quiet_tiny
from tests.conftest import random_params

REPO = pathlib.Path(__file__).resolve().parents[1]
DURATION = 0.012  # tiny: 96 samples at 8 kHz.

# The fault runs (kill -9, full disks, races, subprocesses): minutes between them.
pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  path = tmp_path_factory.mktemp('corpus')
  demo_corpus.synthesize(str(path), sample_rate=8000, num_files=4, seconds=0.2)
  return path


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  """Parameters-only checkpoints at step 2 (what generation reads)."""
  path = tmp_path_factory.mktemp('gen') / 'run'
  config = load_config('tiny')
  config.generate.chunk_size = 48
  checkpoint.save_params(str(path), 2, random_params(model_lib.from_config(config.model)), config)
  return path


# ---------------------------------------------------------------------------------------
# Item 1: the gallery copies only audio from the run's own data
# ---------------------------------------------------------------------------------------


def test_the_profile_names_examples_relative_to_its_data(corpus):
  profile = clip_score.make_profile(clip_score.audio_files([str(corpus)]), 8000, source=str(corpus))
  assert profile.examples and not any(os.path.isabs(e) for e in profile.examples)
  assert clip_score.example_paths(profile) == [
    os.path.realpath(corpus / e) for e in profile.examples
  ]


def test_the_gallery_copies_nothing_the_profile_names_outside_the_data(corpus, tmp_path):
  secret = tmp_path / 'secret.txt'
  secret.write_text('root:x:0:0')
  outside_audio = tmp_path / 'private.wav'
  outside_audio.write_bytes((corpus / os.listdir(corpus)[0]).read_bytes())
  fake_audio = corpus / 'fake.wav'
  fake_audio.write_text('not audio')
  workdir = tmp_path / 'run'
  workdir.mkdir()
  profile = clip_score.make_profile(clip_score.audio_files([str(corpus)]), 8000, source=str(corpus))
  profile.examples = [
    str(secret),
    str(outside_audio),
    '../secret.txt',
    '../private.wav',
    'fake.wav',
  ]
  clip_score.save_profile(str(workdir), profile)

  gallery.build(str(workdir), data_dir=str(corpus))  # Even given the data folder.
  assert os.listdir(workdir / workdir_lib.GALLERY / 'chunks') == []
  fake_audio.unlink()


def test_the_gallery_copies_audio_only_from_data_it_was_given(corpus, tmp_path):
  """The profile's ``source`` is a workdir file too: a crafted one naming a folder of
  private audio copies nothing, unless this command was given that folder as the data."""
  private = tmp_path / 'private'
  private.mkdir()
  (private / 'voice.wav').write_bytes((corpus / os.listdir(corpus)[0]).read_bytes())
  workdir = tmp_path / 'run'
  workdir.mkdir()
  profile = clip_score.make_profile(clip_score.audio_files([str(corpus)]), 8000, source=str(corpus))
  profile.source, profile.examples = str(private), ['voice.wav']
  clip_score.save_profile(str(workdir), profile)
  chunks = workdir / workdir_lib.GALLERY / 'chunks'

  gallery.build(str(workdir))  # samplernn-generate's refresh: no data folder given.
  assert not chunks.exists() or os.listdir(chunks) == []
  gallery.build(str(workdir), data_dir=str(corpus))  # Training's, on other data.
  assert not chunks.exists() or os.listdir(chunks) == []
  gallery.build(str(workdir), data_dir=str(private))  # The run's own data: shown.
  assert os.listdir(chunks) == ['voice.wav']
  gallery.build(str(workdir))  # A later build without it keeps what is on the page.
  assert os.listdir(chunks) == ['voice.wav']


# ---------------------------------------------------------------------------------------
# Item 4: a damaged clip_profile.json is derived data, never a stop
# ---------------------------------------------------------------------------------------


_VERSION = clip_score.PROFILE_VERSION  # Damage to a profile of this version, not an old one.


@pytest.mark.parametrize(
  'damage',
  [f'{{"version": {_VERSION}, "mean"', '[1, 2]', f'{{"version": {_VERSION}}}', 'x' * 10],
)
def test_a_damaged_profile_is_ignored_with_a_warning_naming_it(damage, corpus, tmp_path, caplog):
  path = tmp_path / workdir_lib.CLIP_PROFILE
  path.write_text(damage)
  with caplog.at_level(logging.WARNING):
    assert clip_score.load_profile(str(tmp_path)) is None
    gallery.build(str(tmp_path))
  assert str(path) in caplog.text
  # Training makes it again.
  config = type('C', (), {})()
  config.data = type('D', (), {'sample_rate': 8000, 'val_frac': 0.0})()
  clip_score.store_training_profile(str(tmp_path), str(corpus), config)
  assert clip_score.load_profile(str(tmp_path)) is not None


def test_a_profile_of_another_version_is_set_aside_with_a_warning(corpus, tmp_path, caplog):
  path = tmp_path / workdir_lib.CLIP_PROFILE
  path.write_text(json.dumps({'version': _VERSION - 1}))
  with caplog.at_level(logging.WARNING):
    assert clip_score.load_profile(str(tmp_path)) is None
  assert str(path) in caplog.text and '--reference' in caplog.text
  config = type('C', (), {})()
  config.data = type('D', (), {'sample_rate': 8000, 'val_frac': 0.0})()
  clip_score.store_training_profile(str(tmp_path), str(corpus), config)  # As training does.
  assert clip_score.load_profile(str(tmp_path)).version == _VERSION


def test_generate_reads_a_damaged_profile_before_sampling_and_goes_on(run_dir, tmp_path, caplog):
  (run_dir / workdir_lib.CLIP_PROFILE).write_text('{"version": 1, "mean"')
  with caplog.at_level(logging.WARNING):
    result = clips.generate_files(
      str(run_dir), str(tmp_path / 'c.wav'), duration=DURATION, progress=False
    )
  (run_dir / workdir_lib.CLIP_PROFILE).unlink()
  assert len(result['paths']) == 1 and workdir_lib.CLIP_PROFILE in caplog.text


# ---------------------------------------------------------------------------------------
# Item 2: two samplernn-generate into one --output
# ---------------------------------------------------------------------------------------


def test_a_second_generate_into_the_same_output_is_refused_before_it_samples(
  run_dir, tmp_path, monkeypatch
):
  out = str(tmp_path / 'clip.wav')
  real = sampler_lib.Sampler.generate
  second = {}

  def start_a_second_run_meanwhile(self, *args, callback=None, **kwargs):
    def chunk(levels, start):
      callback(levels, start)
      if not second:
        try:
          clips.generate_files(str(run_dir), out, duration=DURATION, progress=False)
          second['result'] = 'ran'
        except ValueError as e:
          second['result'] = str(e)

    return real(self, *args, callback=chunk, **kwargs)

  monkeypatch.setattr(sampler_lib.Sampler, 'generate', start_a_second_run_meanwhile)
  first = clips.generate_files(str(run_dir), out, duration=DURATION, progress=False)
  assert 'another samplernn-generate is writing these clips now' in second['result']
  assert len(first['paths']) == 1
  # Released at the end: a third run meets only the existing clip.
  monkeypatch.setattr(sampler_lib.Sampler, 'generate', real)
  with pytest.raises(ValueError, match='exists; pass --overwrite'):
    clips.generate_files(str(run_dir), out, duration=DURATION, progress=False)
  assert [n for n in os.listdir(tmp_path) if n.startswith('.')] == []


# ---------------------------------------------------------------------------------------
# Item 5: --output through a folder that does not exist
# ---------------------------------------------------------------------------------------


def test_an_output_through_a_missing_folder_is_refused_before_sampling(
  run_dir, tmp_path, monkeypatch
):
  (tmp_path / 'run').mkdir()
  out = os.path.join(str(tmp_path), 'run', '..', 'missing', '..', 'x.wav')
  monkeypatch.setattr(sampler_lib.Sampler, 'generate', lambda *a, **k: pytest.fail('sampled'))
  with pytest.raises(FileNotFoundError, match=r'missing, which is not a folder'):
    clips.generate_files(str(run_dir), out, duration=DURATION, progress=False)
  # Through folders that exist, '..' is what the kernel makes of it.
  monkeypatch.undo()
  result = clips.generate_files(
    str(run_dir),
    os.path.join(str(tmp_path), 'run', '..', 'y.wav'),
    duration=DURATION,
    progress=False,
  )
  assert os.path.dirname(result['paths'][0]) == str(tmp_path)


def test_a_failed_move_names_where_the_finished_clips_are(run_dir, tmp_path, monkeypatch):
  real = os.replace

  def full(src, dst):
    if '.generating-' in src:
      raise OSError(28, 'No space left on device', dst)
    return real(src, dst)

  monkeypatch.setattr(os, 'replace', full)
  with pytest.raises(OSError, match=r'finished clips not yet moved are in .*\.generating-'):
    clips.generate_files(str(run_dir), str(tmp_path / 'c.wav'), duration=DURATION, progress=False)


# ---------------------------------------------------------------------------------------
# Item 3: kill -9 of samplernn-tune --workers=K takes its workers with it
# ---------------------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.isdir('/proc'), reason='reads /proc')
def test_killed_tune_leaves_no_workers(tmp_path):
  space = tmp_path / 'space.py'
  space.write_text("def get_space():\n  return {'data.shuffle_seed': [0, 1, 2]}\n")
  parent = subprocess.Popen(
    [
      sys.executable,
      '-m',
      'samplernn_jax.commands.tune',
      f'--study_dir={tmp_path / "study"}',
      f'--config={REPO / "configs" / "tiny.py"}',
      f'--space={space}',
      '--sampler=grid',
      '--trials=3',
      '--workers=2',
    ],
    cwd=str(REPO),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  workers = []
  try:
    deadline = time.time() + 120
    while time.time() < deadline and len(workers) < 2 and parent.poll() is None:
      time.sleep(0.1)
      workers = [p for p in children(parent.pid) if alive(p)]
    assert len(workers) == 2, 'tune never started its workers'
    time.sleep(3)  # Into their start-up: both before and after it, they must follow.
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 60
    while time.time() < deadline and any(alive(p) for p in workers):
      time.sleep(0.2)
    assert not [p for p in workers if alive(p)]
  finally:
    for p in workers:  # Only on failure: the workers this test started.
      if alive(p):
        os.kill(p, signal.SIGKILL)


# ---------------------------------------------------------------------------------------
# Item 8: samplernn-prepare on a full disk
# ---------------------------------------------------------------------------------------


class _FullDisk(io.RawIOBase):
  """A file on a full disk: every write fails as the kernel's would."""

  def __init__(self, f):
    self.f = f

  def write(self, data):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  def seek(self, *args):
    return self.f.seek(*args)

  def tell(self):
    return self.f.tell()

  def seekable(self):
    return True

  def writable(self):
    return True


def test_prepare_on_a_full_disk_stops_once_naming_the_device_and_file(
  corpus, tmp_path, monkeypatch, capfd
):
  real = files.atomic_write
  writes = []

  @contextlib.contextmanager
  def full(path, mode='w', **kwargs):
    writes.append(path)
    with real(path, mode, **kwargs) as f:
      yield _FullDisk(f)

  monkeypatch.setattr(files, 'atomic_write', full)
  out = tmp_path / 'chunks'
  settings = prepare.Settings(sample_rate=8000, chunk_length_ms=50, overlap_ms=0)
  with pytest.raises(OSError) as raised:
    prepare.prepare([str(corpus)], str(out), settings, progress=False)
  assert re.fullmatch(
    r'no space left on /\S* writing \S*/chunks/demo_000_00000\.wav; free some space .*\.',
    cli.describe(raised.value),
  ), cli.describe(raised.value)
  assert len(writes) == 1  # Stopped at once: the next files would fail alike.
  assert [n for n in os.listdir(out) if n != prepare.MANIFEST_DIR] == []  # No partial file.
  assert 'Traceback' not in capfd.readouterr().err


# ---------------------------------------------------------------------------------------
# Item 9: a file shorter than one window costs only itself
# ---------------------------------------------------------------------------------------


def test_a_file_shorter_than_one_window_is_skipped_with_a_warning(corpus, tmp_path, caplog):
  data = tmp_path / 'data'
  shutil.copytree(corpus, data)
  sf.write(data / 'one_sample.wav', np.zeros(1, np.float32), 8000)
  config = load_config('tiny')
  config.data.val_frac = 0.0
  with caplog.at_level(logging.WARNING):
    datasets = input_pipeline.make_datasets(
      config, str(data), num_epochs=1, process_index=0, process_count=1
    )
  assert str(data / 'one_sample.wav') not in datasets.train_files
  assert len(datasets.train_files) == 4 and sum(datasets.windows_per_epoch) > 0
  assert f'{data / "one_sample.wav"} (1)' in caplog.text


# ---------------------------------------------------------------------------------------
# Item 11: the same --data_dir, relative then absolute
# ---------------------------------------------------------------------------------------


def test_a_resume_over_the_same_files_named_another_way_is_no_change(
  corpus, tmp_path, monkeypatch, caplog
):
  class Files:  # What _note_data_change reads of a Datasets.
    def __init__(self, paths):
      self.train_files, self.val_files = tuple(paths), ()

  names = sorted(os.listdir(corpus))
  note = train._note_data_change  # pylint: disable=protected-access
  note(str(tmp_path), Files([str(corpus / n) for n in names]), resumed=False)
  monkeypatch.chdir(corpus.parent)
  with caplog.at_level(logging.WARNING):
    note(str(tmp_path), Files([os.path.join(corpus.name, n) for n in names]), resumed=True)
  assert 're-planned' not in caplog.text


# ---------------------------------------------------------------------------------------
# Item 12: one picture per clip
# ---------------------------------------------------------------------------------------


def test_clips_whose_paths_flatten_alike_get_their_own_pictures(tmp_path):
  names = ['out/x/y.wav', 'out/x_y.wav', 'out_x_y.wav']
  for i, name in enumerate(names):
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    sf.write(tmp_path / name, np.full(800, 0.1 * (i + 1), np.float32), 8000)
  gallery.build(str(tmp_path))
  images = os.listdir(tmp_path / workdir_lib.GALLERY / 'images')
  assert len(images) == 3
  page = (tmp_path / workdir_lib.GALLERY / gallery.INDEX).read_text()
  assert all(image in page for image in images)
  assert {gallery.picture_name(n) for n in names} <= set(images)


# ---------------------------------------------------------------------------------------
# Item 13: nothing in a workdir is moved or emptied on a guess
# ---------------------------------------------------------------------------------------


def test_training_a_workdir_with_another_config_is_refused_and_changes_nothing(tmp_path):
  corpus = str(tmp_path / 'corpus')
  demo_corpus.synthesize(corpus, sample_rate=8000, num_files=10, seconds=0.05)
  workdir = tmp_path / 'run'
  train.train_and_evaluate(quiet_tiny(num_epochs=1), str(workdir), corpus)
  before = {str(p.relative_to(workdir)): p.read_bytes() for p in workdir.rglob('*') if p.is_file()}
  with pytest.raises(ValueError, match=r'differs in train\.batch_size \(4 there, 2 here\)'):
    train.train_and_evaluate(quiet_tiny(num_epochs=1, batch_size=2), str(workdir), corpus)
  after = {str(p.relative_to(workdir)): p.read_bytes() for p in workdir.rglob('*') if p.is_file()}
  assert after == before


def test_a_run_starting_afresh_keeps_the_records_it_finds(tmp_path):
  workdir_lib.append_record(str(tmp_path), {'kind': 'train', 'step': 5, 'epoch': 0, 'loss': 1.0})
  reporter = reporting.Reporter(str(tmp_path), quiet_tiny(), (10,), resumed_step=0)
  reporter.close()
  assert [r['step'] for r in workdir_lib.read_records(str(tmp_path))] == [5]


# ---------------------------------------------------------------------------------------
# Item 14: Ctrl-C and SIGTERM stop samplernn-generate
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_generation_after_a_chunk_and_keeps_the_clips(
  run_dir, tmp_path, monkeypatch, signum
):
  real = sampler_lib.Sampler.generate
  chunks = []

  def signal_during_the_first_chunk(self, *args, callback=None, **kwargs):
    def chunk(levels, start):
      chunks.append(start)
      if len(chunks) == 1:
        os.kill(os.getpid(), signum)
      callback(levels, start)

    return real(self, *args, callback=chunk, **kwargs)

  monkeypatch.setattr(sampler_lib.Sampler, 'generate', signal_during_the_first_chunk)
  # A shell's background job ignores SIGINT: the run must stop all the same.
  previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
  try:
    with pytest.raises(clips.Stopped, match=r'stopped by SIG(INT|TERM) after 48 of 400') as e:
      clips.generate_files(str(run_dir), str(tmp_path / 'c.wav'), duration=0.05, progress=False)
  finally:
    signal.signal(signal.SIGINT, previous)
  assert e.value.signum == signum and len(chunks) == 1
  (scratch,) = [p for p in tmp_path.iterdir() if p.name.startswith('.generating-')]
  assert str(scratch) in str(e.value)
  assert [sf.info(p).frames for p in scratch.iterdir()] == [48]
  assert not (tmp_path / 'c_e=2_t=0.95.wav').exists()
  assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # Handlers put back.


# ---------------------------------------------------------------------------------------
# Item 15: clips written into the workdir itself are on its page
# ---------------------------------------------------------------------------------------


def test_clips_in_the_workdir_itself_refresh_its_page(run_dir, tmp_path):
  result = clips.generate_files(
    str(run_dir), str(run_dir / 'own.wav'), duration=DURATION, progress=False
  )
  page = run_dir / workdir_lib.GALLERY / gallery.INDEX
  assert result['gallery'] == str(page) and 'own_e=2_t=0.95.wav' in page.read_text()
  elsewhere = clips.generate_files(
    str(run_dir), str(tmp_path / 'x.wav'), duration=DURATION, progress=False
  )
  assert elsewhere['gallery'] is None


# ---------------------------------------------------------------------------------------
# Item 17: files at another rate than the model's are resampled, and the run says so
# ---------------------------------------------------------------------------------------


def test_files_at_another_rate_are_named_once_at_start(tmp_path, caplog):
  data = tmp_path / 'data'
  demo_corpus.synthesize(str(data), sample_rate=16000, num_files=5, seconds=0.05)
  config = load_config('tiny')  # 8 kHz
  with caplog.at_level(logging.WARNING):
    input_pipeline.make_datasets(config, str(data), num_epochs=1, process_index=0, process_count=1)
  said = [r.getMessage() for r in caplog.records if 'resampled' in r.getMessage()]
  assert len(said) == 1 and 'is at 16000 Hz; the model trains and generates at 8000 Hz' in said[0]


# ---------------------------------------------------------------------------------------
# Item 10: a full disk during a checkpoint save
# ---------------------------------------------------------------------------------------

# What Orbax raised for a full disk in a trial (TensorStore's text).
_FULL = (
  'RESOURCE_EXHAUSTED: Error writing "x/0.0" in OCDBT database at local file '
  '"/runs/a/checkpoints/100.tmp/params/": Failed writing: "/runs/a/checkpoints/100.tmp/params/'
  "d/2f47\": Failed to write 176375 bytes to file 30: No space left on device [os_error_code='28']"
)


def test_a_full_disk_at_a_checkpoint_is_one_line_naming_the_workdir_and_the_space(
  tmp_path, monkeypatch
):
  corpus = str(tmp_path / 'corpus')
  demo_corpus.synthesize(corpus, sample_rate=8000, num_files=10, seconds=0.05)

  def full(*args, **kwargs):
    raise ValueError(_FULL)

  monkeypatch.setattr(checkpoint, 'save_training', full)
  workdir = tmp_path / 'run'
  with pytest.raises(OSError) as raised:
    train.train_and_evaluate(quiet_tiny(num_epochs=1), str(workdir), corpus)
  line = cli.describe(raised.value)
  assert re.fullmatch(
    rf'{workdir}: no space left on device to save a checkpoint \(about [\d.,]+ MB each, '
    r'[\d,]+ MB free\); run again once there is room: it resumes from the last complete '
    r'one; free some space or choose a folder on another disk\.',
    line,
  ), line


def test_a_full_disk_in_a_writer_thread_prints_no_traceback(monkeypatch):
  printed = []  # What the default hook would print a traceback for.
  monkeypatch.setattr(threading, 'excepthook', lambda args: printed.append(args.exc_type))
  monkeypatch.setattr(sys, 'excepthook', sys.excepthook)
  cli.quiet_logs()

  def fail(error):
    thread = threading.Thread(target=lambda: (_ for _ in ()).throw(error))
    thread.start()
    thread.join()

  fail(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
  assert printed == []  # The main thread reports it, once.
  fail(RuntimeError('a bug'))
  assert printed == [RuntimeError]


# ---------------------------------------------------------------------------------------
# Item 16: the time estimate counts validation
# ---------------------------------------------------------------------------------------


def test_the_time_estimate_counts_validation_once_one_is_timed(tmp_path, capsys):
  config = quiet_tiny(eval_every_steps=10)
  reporter = reporting.Reporter(str(tmp_path), config, (40, 40))
  metrics = {'loss': 5.0, 'accuracy': 0.1, 'bits_per_sample': 7.0}
  for i in range(1, 8):
    reporter.step(step=i, epoch=1, in_epoch=i, metrics=metrics, log=False)
  time.sleep(0.5)  # The validation.
  reporter.evaluation(7, 1, {'val_loss': 5.0})
  reporter.close()
  # Left: 73 steps, validations at 10, 20, 30, 50, 60, 70 and each epoch's end (40, 80).
  assert re.search(r'A validation takes 0\.\d s; with 8 more, the rest', capsys.readouterr().out)


# ---------------------------------------------------------------------------------------
# Also: a damaged study database, a read-only workdir for the gallery
# ---------------------------------------------------------------------------------------


def test_a_damaged_study_database_is_one_line_naming_it(tmp_path):
  from samplernn_jax.search import tune  # pylint: disable=g-import-not-at-top  (optuna)

  (tmp_path / 'study.db').write_bytes(b'not a database ' * 100)
  with pytest.raises(tune.TuneError, match=rf'^{tmp_path}/study\.db: cannot open the study'):
    tune.load_study(str(tmp_path), None, 'study')


def test_off_a_terminal_step_lines_come_at_most_every_few_seconds(tmp_path, capsys):
  reporter = reporting.Reporter(str(tmp_path), quiet_tiny(print_every_seconds=10.0), (500,))
  reporter.tty = False
  metrics = {'loss': 5.0, 'accuracy': 0.1, 'bits_per_sample': 7.0}
  for i in range(1, 201):
    reporter.step(step=i, epoch=1, in_epoch=i, metrics=metrics, log=True)
  reporter.close()
  lines = [line for line in capsys.readouterr().out.splitlines() if ', Step ' in line]
  assert len(lines) == 1  # The first; the next is due 10 s later.
  assert len(workdir_lib.read_records(str(tmp_path), 'train')) == 200  # Every step recorded.


# ---------------------------------------------------------------------------------------
# Also: samplernn-prepare killed mid-file, then run again
# ---------------------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.isdir('/proc'), reason='reads /proc')
def test_prepare_killed_mid_run_then_rerun_gives_the_same_chunks(tmp_path):
  src = tmp_path / 'src'
  src.mkdir()
  rng = np.random.default_rng(0)
  for i in range(24):
    sf.write(src / f's{i:02d}.wav', (0.3 * rng.standard_normal(16000)).astype(np.float32), 8000)
  args = [f'--input={src}', '--chunk_length_ms=100', '--overlap_ms=0', '--sample_rate=8000']

  def prepare_command(out, **kwargs):
    return subprocess.Popen(
      [sys.executable, '-m', 'samplernn_jax.commands.prepare', *args, f'--output_dir={out}'],
      cwd=str(REPO),
      stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL,
      **kwargs,
    )

  killed = tmp_path / 'killed'
  run = prepare_command(killed)
  deadline = time.time() + 120
  while time.time() < deadline and run.poll() is None and len(list(killed.glob('*.wav'))) < 40:
    time.sleep(0.02)
  os.kill(run.pid, signal.SIGKILL)
  run.wait()  # Its workers follow it (tested in failure_paths_test).
  assert prepare_command(killed).wait(timeout=300) == 0
  fresh = tmp_path / 'fresh'
  assert prepare_command(fresh).wait(timeout=300) == 0

  def chunks(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}

  assert chunks(killed) == chunks(fresh) and len(chunks(fresh)) > 40


# ---------------------------------------------------------------------------------------
# Item 18: the training curve says why it jumps
# ---------------------------------------------------------------------------------------


def test_the_curve_says_why_the_loss_jumps_at_new_files(tmp_path, monkeypatch):
  figures = []
  monkeypatch.setattr(gallery, '_save', lambda fig, path: figures.append(fig))
  records = [
    {'kind': 'train', 'step': s, 'epoch': 1, 'bits_per_sample': 7.0 - s / 10} for s in (1, 2, 3)
  ]
  assert gallery.plot_curves(records, [], str(tmp_path / 'curves.png'))
  titles = [ax.get_title(loc='left') for ax in figures[0].axes]
  assert any('RNN state starts from zero' in t for t in titles)


# ---------------------------------------------------------------------------------------
# Also: a generation that will take hours says so early
# ---------------------------------------------------------------------------------------


def test_a_generation_of_over_an_hour_says_how_long_up_front(
  run_dir, tmp_path, monkeypatch, capsys
):
  clock = iter(range(0, 10**9, 1000))  # 1000 s pass between any two readings of the clock.
  monkeypatch.setattr(sampler_lib.time, 'perf_counter', lambda: float(next(clock)))
  monkeypatch.setattr(clips, 'PROBE_ABOVE_SAMPLES', 400)  # As --num_seqs=5000 would be.
  delivered, said_after = [], []
  write, on_speed = clips._ChunkWriter.__call__, clips._ChunkWriter.on_speed
  monkeypatch.setattr(
    clips._ChunkWriter, '__call__', lambda self, *a: (delivered.append(1), write(self, *a))
  )
  monkeypatch.setattr(
    clips._ChunkWriter,
    'on_speed',
    lambda self, rate: (said_after.append(len(delivered)), on_speed(self, rate)),
  )
  clips.generate_files(str(run_dir), str(tmp_path / 'c.wav'), duration=0.05, progress=False)
  said = [line for line in capsys.readouterr().err.splitlines() if ' h for 1 clip of ' in line]
  assert len(said) == 1 and said[0].startswith('About ') and 'Ctrl-C stops the run' in said[0]
  # Once the compiled probe chunk is timed: after one short chunk of a run of several.
  assert said_after == [1] and len(delivered) > 3


# ---------------------------------------------------------------------------------------
# Also: samplernn-gallery on a read-only workdir
# ---------------------------------------------------------------------------------------


def test_a_read_only_workdir_stops_the_gallery_before_any_work(tmp_path, monkeypatch):
  sf.write(tmp_path / 'clip.wav', np.full(800, 0.1, np.float32), 8000)
  real = tempfile.TemporaryFile

  def read_only(*args, **kwargs):  # As a read-only mount answers (tests run as root here).
    if str(tmp_path) in str(kwargs.get('dir', '')):
      raise PermissionError(errno.EROFS, os.strerror(errno.EROFS))
    return real(*args, **kwargs)

  monkeypatch.setattr(tempfile, 'TemporaryFile', read_only)
  monkeypatch.setattr(gallery, 'plot_clip', lambda *a, **k: pytest.fail('worked on a picture'))
  with pytest.raises(OSError) as raised:
    gallery.build(str(tmp_path))
  assert cli.describe(raised.value) == (
    f'{tmp_path}/gallery: Read-only file system (the folder of --workdir); the file system is '
    'read-only; choose another folder.'
  )
