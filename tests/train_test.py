"""The training loop: learning, resume equality, SIGTERM, devices, retention, errors, NaN.

Every run is the tiny config on ten 0.2 s files at 8 kHz (100 steps per epoch). Compiles
are shared through a persistent compilation cache, subprocesses included.
"""

import json
import math
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from samplernn_jax import checkpoint as checkpoint_lib
from samplernn_jax import reporting
from samplernn_jax import train
from samplernn_jax import train_state
from samplernn_jax import workdir as workdir_lib
from samplernn_jax.listening import training_hooks
from tests.conftest import quiet_tiny
from tests.conftest import synthesize_corpus

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH = 100


pytestmark = pytest.mark.usefixtures('module_compilation_cache')


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  return synthesize_corpus(tmp_path_factory, seconds=0.2)


def tiny(**train_overrides):
  # lr 3e-3: learns visibly within 200 steps.
  return quiet_tiny(**{'learning_rate': 3e-3, **train_overrides})


def params_of(workdir, step=None):
  return checkpoint_lib.restore_params(str(workdir), step)[0]


def records(workdir, kind=None):
  return workdir_lib.read_records(str(workdir), kind)


@pytest.fixture(scope='module')
def two_epochs(tmp_path_factory, corpus):
  """An uninterrupted 2-epoch run (with a stand-in sampler for in-training generation)."""
  workdir = tmp_path_factory.mktemp('two_epochs') / 'run'
  from samplernn_jax import sampler

  real = sampler.generate
  sampler.generate = lambda params, model_config, num_samples, temperatures, rng, **kw: np.full(
    (len(temperatures), num_samples), 128, np.int32
  )
  config = tiny(num_epochs=2, log_every_steps=10)
  config.generate.max_generate_per_epoch = 1
  try:
    final = train.train_and_evaluate(
      config, str(workdir), corpus, hooks=training_hooks.training_hooks(config)
    )
  finally:
    sampler.generate = real
  return workdir, final


@pytest.fixture(scope='module')
def one_epoch(tmp_path_factory, corpus):
  workdir = tmp_path_factory.mktemp('one_epoch') / 'run'
  train.train_and_evaluate(tiny(num_epochs=1), str(workdir), corpus)
  return workdir


def test_loss_falls_and_run_is_logged(two_epochs):
  workdir, final = two_epochs
  steps = records(workdir, 'train')
  epochs = records(workdir, 'epoch')
  assert steps[0]['loss'] > math.log(256) - 0.1  # About uniform over 256 levels at first.
  assert final['loss'] < steps[0]['loss'] - 0.5, (steps[0], final)
  assert epochs[1]['val_loss'] < epochs[0]['val_loss']
  assert 0 <= final['val_accuracy'] <= 1 and final['val_bits_per_sample'] > 0
  assert sorted(os.listdir(workdir / workdir_lib.CHECKPOINTS)) == ['100', '200']
  assert sorted(os.listdir(workdir / workdir_lib.GENERATED)) == [
    'run_e=1_t=0.95.wav',
    'run_e=2_t=0.95.wav',
  ]
  assert any(
    f.startswith('events.out.tfevents') for f in os.listdir(workdir / workdir_lib.TENSORBOARD)
  )


# The mean train loss of one_epoch's 100 steps (tiny config, learning rate 3e-3, `corpus`).
# A change of the numerics (model, loss, optimizer, initialization, data order) moves it:
# a 1% larger learning rate or hidden2 without its bias moves it by more than 1e-3, while a
# 1e-6 change of the learning rate (about what another CPU's float32 summation order does)
# moves it by 1e-7. If you changed the numerics on purpose, run
# `pytest tests/train_test.py -k golden` and paste the value its message gives.
GOLDEN_EPOCH_LOSS = 5.343853778839112


def test_golden_loss(one_epoch):
  (epoch,) = records(one_epoch, 'epoch')
  assert epoch['step'] == STEPS_PER_EPOCH
  np.testing.assert_allclose(
    epoch['loss'],
    GOLDEN_EPOCH_LOSS,
    rtol=2e-4,
    err_msg=(
      f'The mean train loss of the first {STEPS_PER_EPOCH} steps is {epoch["loss"]!r}, pinned '
      f'at {GOLDEN_EPOCH_LOSS!r}. If you changed the numerics on purpose, set '
      f'GOLDEN_EPOCH_LOSS = {epoch["loss"]!r} in tests/train_test.py.'
    ),
  )


def test_the_loop_makes_no_implicit_transfer(tmp_path, corpus, monkeypatch):
  """The loop runs under jax.transfer_guard('disallow') (kauldron's way): a run through
  every stage passes, and a stray implicit copy to the device fails it."""
  config = tiny(num_epochs=1, log_every_steps=1, eval_every_steps=30, checkpoint_every_steps=40)
  train.train_and_evaluate(config, str(tmp_path / 'clean'), corpus)
  report_step = reporting.Reporter.step

  def step_with_a_stray_copy(self, **kwargs):
    jax.numpy.asarray(np.float32(kwargs['metrics']['loss']))  # Host to device, implicitly.
    report_step(self, **kwargs)

  monkeypatch.setattr(reporting.Reporter, 'step', step_with_a_stray_copy)
  with pytest.raises(jax.errors.JaxRuntimeError, match='Disallowed host-to-device transfer'):
    train.train_and_evaluate(config, str(tmp_path / 'stray'), corpus)


def test_more_epochs_resume_like_one_run(two_epochs, one_epoch, tmp_path, corpus):
  workdir = tmp_path / 'run'
  shutil.copytree(one_epoch, workdir)
  train.train_and_evaluate(tiny(num_epochs=2), str(workdir), corpus)
  chex.assert_trees_all_close(params_of(workdir), params_of(two_epochs[0]), atol=1e-6)


@pytest.mark.slow
def test_sigterm_saves_and_resumes_exactly(two_epochs, tmp_path, corpus):
  """A run killed mid-epoch (carry and data position saved) ends like an uninterrupted one."""
  workdir = tmp_path / 'run'
  script = textwrap.dedent(f"""
      import sys; sys.path.insert(0, {str(REPO)!r})
      from tests.train_test import tiny
      from samplernn_jax import train
      # Many epochs, so the signal surely lands mid-run; the resume below runs 2.
      config = tiny(num_epochs=50, log_every_steps=1, print_every_seconds=0)  # A line per step.
      train.train_and_evaluate(config, {str(workdir)!r}, {corpus!r})
      print('CLEAN EXIT', flush=True)
  """)
  proc = subprocess.Popen(
    [sys.executable, '-c', script],
    stdout=subprocess.PIPE,
    stderr=subprocess.DEVNULL,
    text=True,
    cwd=REPO,
  )
  for line in proc.stdout:
    if 'Step 30/' in line:
      proc.send_signal(signal.SIGTERM)
      break
  out = proc.stdout.read()
  assert proc.wait(timeout=120) == 0 and 'CLEAN EXIT' in out
  step = checkpoint_lib.latest_step(str(workdir))
  assert 30 <= step < STEPS_PER_EPOCH, step  # Mid-epoch: the carry matters.
  train.train_and_evaluate(tiny(num_epochs=2), str(workdir), corpus)
  chex.assert_trees_all_close(params_of(workdir), params_of(two_epochs[0]), atol=1e-6)


def test_nan_stops_and_keeps_last_checkpoint(one_epoch, tmp_path, corpus):
  workdir = tmp_path / 'run'
  shutil.copytree(one_epoch, workdir)
  with pytest.raises(FloatingPointError, match='last good checkpoint is 100'):
    train.train_and_evaluate(tiny(num_epochs=2, learning_rate=float('nan')), str(workdir), corpus)
  assert checkpoint_lib.latest_step(str(workdir)) == STEPS_PER_EPOCH
  chex.assert_trees_all_close(params_of(workdir), params_of(one_epoch))


def test_early_stopping_and_params_only_start(one_epoch, tmp_path, corpus):
  """From a parameters-only checkpoint (as imported from PRiSM); lr 0 never improves."""
  workdir = str(tmp_path / 'run')
  params, config, _ = checkpoint_lib.restore_params(str(one_epoch))
  checkpoint_lib.save_params(workdir, 7, params, config)
  final = train.train_and_evaluate(
    tiny(num_epochs=5, learning_rate=0.0, early_stopping_patience=1), workdir, corpus
  )
  epochs = records(workdir, 'epoch')
  assert len(epochs) == 2  # Epoch 2 did not improve on epoch 1: patience 1 stops.
  assert final['val_loss'] == epochs[0]['val_loss']
  assert checkpoint_lib.latest_step(workdir) == 7 + 2 * STEPS_PER_EPOCH
  chex.assert_trees_all_close(params_of(workdir), params)


def test_missing_or_empty_data_dir(tmp_path):
  with pytest.raises(FileNotFoundError, match='not a directory'):
    train.train_and_evaluate(tiny(), str(tmp_path / 'run'), str(tmp_path / 'nowhere'))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(ValueError, match='holds no audio files'):
    train.train_and_evaluate(tiny(), str(tmp_path / 'run'), str(tmp_path / 'empty'))
  assert not (tmp_path / 'run').exists()  # Refused before anything was written.


def test_a_new_workdir_refused_in_setup_is_removed(tmp_path, corpus):
  (tmp_path / 'old').mkdir()
  for workdir in (tmp_path / 'new', tmp_path / 'old'):
    with pytest.raises(ValueError, match='fewer than batch_size'):
      train.train_and_evaluate(tiny(batch_size=64), str(workdir), corpus)
  assert not (tmp_path / 'new').exists()  # Nothing half-written left behind.
  assert (tmp_path / 'old').exists()  # A folder the user had stays.


@pytest.mark.parametrize(
  'policy,keep,expected',
  [
    ('Always', 2, [4, 5]),
    ('Always', 0, [1, 2, 3, 4, 5]),
    ('Best', 2, [2, 4, 5]),  # The two best by val_loss, and the newest to resume from.
  ],
)
def test_retention(tmp_path, policy, keep, expected):
  config = tiny(checkpoint_policy=policy, max_checkpoints=keep)
  manager = checkpoint_lib.make_manager(
    str(tmp_path), checkpoint_lib.training_options(config.train)
  )
  for step, val_loss in zip(range(1, 6), [5.0, 2.0, 4.0, 1.0, 3.0]):
    manager.save(
      step,
      args=ocp.args.Composite(params=ocp.args.StandardSave({'w': np.zeros(2)})),
      metrics={'val_loss': val_loss},
    )
  manager.wait_until_finished()
  assert manager.all_steps() == expected
  manager.close()


def test_optimizers_and_prism_lr_decay():
  config = tiny(reduce_learning_rate_after=2, learning_rate=1.0, lr_decay_rate=0.1)
  schedule = train_state.learning_rate_schedule(config, [10, 10, 10, 10])
  got = [float(schedule(s)) for s in (0, 19, 20, 29, 30, 39)]
  np.testing.assert_allclose(
    got, [1, 1, math.exp(-0.1), math.exp(-0.1), math.exp(-0.2), math.exp(-0.2)], rtol=1e-6
  )
  with pytest.raises(ValueError, match='steps_per_epoch'):
    train_state.make_optimizer(config)
  params = {'w': np.ones(3, np.float32)}
  for name in train_state.OPTIMIZERS:
    tx = train_state.make_optimizer(tiny(optimizer=name, clip_norm=1.0))
    updates, _ = tx.update({'w': np.full(3, 100.0, np.float32)}, tx.init(params), params)
    assert np.all(np.isfinite(updates['w'])) and np.all(updates['w'] < 0)
  with pytest.raises(ValueError, match='optimizer'):
    train_state.make_optimizer(tiny(optimizer='lamb'))


TWO_DEVICES = """
import json, sys
sys.path.insert(0, {repo!r})
import jax
assert jax.device_count() == 2, jax.devices()
from tests.train_test import tiny
from samplernn_jax import train
# The whole loop on two devices: sharded carry, replicated state, through checkpoints.
metrics = train.train_and_evaluate(tiny(num_epochs=1, checkpoint_every_steps=50), {workdir!r},
                                   {corpus!r})
print('METRICS ' + json.dumps(metrics))
"""


@pytest.mark.slow
def test_the_loop_on_two_devices_matches_one(tmp_path, corpus):
  """The loop around the step (data_parallel_test checks the step itself on 1, 2, 4)."""
  # A cache of its own: both processes compile at once (no concurrent writers to one dir).
  env = dict(
    os.environ,
    XLA_FLAGS='--xla_force_host_platform_device_count=2',
    JAX_PLATFORMS='cpu',
    JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'jax_cache'),
  )
  script = TWO_DEVICES.format(repo=str(REPO), workdir=str(tmp_path / 'run'), corpus=corpus)
  proc = subprocess.Popen(
    [sys.executable, '-c', script],
    env=env,
    cwd=REPO,
    text=True,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
  )
  one = train.train_and_evaluate(
    tiny(num_epochs=1, checkpoint_every_steps=50), str(tmp_path / 'one'), corpus
  )  # Meanwhile, on one device.
  stdout, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 0 and 'METRICS ' in stdout, stderr[-6000:]
  two = json.loads(stdout.split('METRICS ', 1)[1].splitlines()[0])
  assert two.keys() == one.keys()
  for k, v in one.items():
    np.testing.assert_allclose(two[k], v, rtol=1e-5, err_msg=k)
  assert sorted(os.listdir(tmp_path / 'run' / workdir_lib.CHECKPOINTS)) == ['100', '50']
