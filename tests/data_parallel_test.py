"""Data parallel: N devices each do 1/N of the step, and N devices compute what one does.

The compiled program is read on 8 forced CPU devices (``benchmarks.scaling_lib``):
per-device FLOPs, and which collectives move what. Equality runs 1, 2 and 4 devices in one
subprocess, and two processes on localhost (``jax.distributed``, gloo collectives).
"""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from benchmarks import scaling_lib
from samplernn_jax import config as config_lib
from tests.conftest import load_config

REPO = pathlib.Path(__file__).resolve().parents[1]


def small_config(batch_size: int):
  config = load_config('tiny')
  # Wide and long enough that the step's work dwarfs the optimizer's per-parameter update,
  # which every device repeats on the averaged gradient.
  config.model.dim = 64
  config.data.seq_len = 128
  config.train.batch_size = batch_size
  return config_lib.validate(config)


def param_bytes(config) -> int:
  from samplernn_jax import model as model_lib

  model = model_lib.from_config(config.model)
  shapes = jax.eval_shape(lambda: model_lib.init_params(model, jax.random.key(0)))
  return sum(int(np.prod(a.shape)) * a.dtype.itemsize for a in jax.tree.leaves(shapes))


def test_each_of_8_devices_does_an_eighth():
  config = small_config(batch_size=24)  # 24 rows: a size no model dimension has.
  result = scaling_lib.run_in_subprocess(config, [1, 8])
  one, eight = result['devices']['1'], result['devices']['8']
  assert eight['flops_per_device'] <= 1.1 * one['flops_per_device'] / 8, (
    eight['flops_per_device'],
    one['flops_per_device'],
  )
  c = eight['collectives']
  # No activation crosses devices: nothing gathered has the global batch as a dimension, and
  # only the weight folds are gathered (their gradients come back as reduce-scatters).
  for kind in ('all-gather', 'reduce-scatter', 'all-to-all', 'collective-permute'):
    for shape in c[kind]['shapes']:
      dims = [int(d) for d in shape.split('[', 1)[1].split(']')[0].split(',') if d]
      assert 24 not in dims and 3 not in dims[:1], (kind, shape)
  assert c['all-to-all']['count'] == 0 and c['collective-permute']['count'] == 0
  # The gradients are reduced once: one all-reduce payload of every parameter, plus the
  # four metric scalars, none of it inside a loop.
  assert 0 <= c['all-reduce']['payload_bytes'] - param_bytes(config) <= 64, c['all-reduce']
  assert sum(v['in_loop'] for v in c.values()) == 0


DEVICES_MATCH = """
import sys
sys.path.insert(0, {repo!r})
import jax, numpy as np
assert jax.device_count() == 4, jax.devices()
from tests.data_parallel_test import steps_on
variants = [dict(rnn_type='gru'), dict(rnn_type='gru', skip_conn=True),
            dict(rnn_type='lstm'),
            dict(rnn_type='lstm', skip_conn=True, learn_h0=True, rnn_dropout=0.25),
            dict(rnn_type='gru', skip_conn=True, rnn_dropout=0.25, rnn_form='wavefront')]
for v in variants:
  params_1, loss_1 = steps_on(jax.devices()[:1], **v)
  for n in (2, 4):
    params_n, loss_n = steps_on(jax.devices()[:n], **v)
    np.testing.assert_allclose(loss_n, loss_1, rtol=1e-6, err_msg=str((v, n)))
    for a, b in zip(jax.tree.leaves(params_n), jax.tree.leaves(params_1)):
      np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-5, err_msg=str((v, n)))
print('OK')
"""


def steps_on(devices, num_steps=3, **model_overrides):
  """Parameters and last loss after ``num_steps`` fixed windows on a mesh over ``devices``."""
  from samplernn_jax import steps
  from samplernn_jax import train_state

  config = load_config('tiny')
  config.model.update(model_overrides)
  config_lib.validate(config)
  rng = np.random.default_rng(0)
  length = config.data.seq_len + config.model.frame_sizes[-1]
  mesh = steps.make_mesh(devices)
  state = jax.jit(
    lambda: train_state.create_train_state(config, jax.random.PRNGKey(0)),
    out_shardings=steps.replicated(mesh),
  )()
  carry = steps.make_init_carry(config, mesh)(state.params)
  step = steps.make_train_step(config, mesh)
  for k in range(num_steps):
    batch = {'x': rng.integers(0, 256, (4, length)).astype(np.int32), 'reset': np.bool_(k == 0)}
    state, carry, metrics = step(state, carry, steps.global_batch(mesh, batch))
  return jax.device_get(state.params), float(metrics['loss'])


@pytest.mark.slow
def test_one_two_and_four_devices_give_the_same_parameters(tmp_path):
  env = dict(
    os.environ,
    XLA_FLAGS='--xla_force_host_platform_device_count=4',
    JAX_PLATFORMS='cpu',
    JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'jax_cache'),
  )
  proc = subprocess.run(
    [sys.executable, '-c', DEVICES_MATCH.format(repo=str(REPO))],
    env=env,
    cwd=REPO,
    text=True,
    capture_output=True,
    timeout=600,
    check=False,
  )
  assert proc.returncode == 0 and 'OK' in proc.stdout, proc.stderr[-6000:]


TWO_HOSTS = """
import sys
sys.path.insert(0, {repo!r})
import jax, numpy as np
jax.config.update('jax_cpu_collectives_implementation', 'gloo')
jax.distributed.initialize(coordinator_address='localhost:{port}', num_processes=2,
                           process_id={process_id})
assert jax.process_count() == 2 and jax.device_count() == 2
from samplernn_jax import steps, train_state
from tests.conftest import load_config
config = load_config('tiny')
rng = np.random.default_rng(0)
length = config.data.seq_len + config.model.frame_sizes[-1]
mesh = steps.make_mesh()
state = jax.jit(lambda: train_state.create_train_state(config, jax.random.PRNGKey(0)),
                out_shardings=steps.replicated(mesh))()
carry = steps.make_init_carry(config, mesh)(state.params)
step = steps.make_train_step(config, mesh)
for k in range(3):
  x = rng.integers(0, 256, (4, length)).astype(np.int32)
  mine = {{'x': x[2 * {process_id}:2 * {process_id} + 2], 'reset': np.bool_(k == 0)}}  # Own rows.
  state, carry, metrics = step(state, carry, steps.global_batch(mesh, mine))
params = steps.host_local(state.params)
if {process_id} == 0:
  np.savez({out!r}, loss=float(metrics['loss']),
           **{{str(i): np.asarray(a) for i, a in enumerate(jax.tree.leaves(params))}})
print('OK')
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_compute_what_one_device_does(tmp_path):
  out = str(tmp_path / 'hosts.npz')
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='')
  procs = [
    subprocess.Popen(
      [sys.executable, '-c', TWO_HOSTS.format(repo=str(REPO), port=port, process_id=i, out=out)],
      env=env,
      cwd=REPO,
      text=True,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
    )
    for i in range(2)
  ]
  params_1, loss_1 = steps_on(jax.devices()[:1])
  for p in procs:
    try:
      stdout, stderr = p.communicate(timeout=300)
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      pytest.fail('two-process run timed out')
    assert p.returncode == 0 and 'OK' in stdout, stderr[-6000:]
  hosts = np.load(out)
  np.testing.assert_allclose(float(hosts['loss']), loss_1, rtol=1e-6)
  for i, v in enumerate(jax.tree.leaves(params_1)):
    np.testing.assert_allclose(hosts[str(i)], v, atol=2e-6, rtol=1e-5)
