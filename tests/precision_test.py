"""bfloat16 matmuls (``config.model.dtype='bfloat16'``): the program, the numbers, training.

The program is read from the lowered train step (see ``benchmarks/dots.py`` for why not the
compiled one); the numbers are set against float32 and PRiSM on its fixtures; training runs
on the demo corpus, and resumes across dtypes.
"""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import dots as dots_lib
from benchmarks import scaling_lib
from samplernn_jax import checkpoint as checkpoint_lib
from samplernn_jax import model as model_lib
from samplernn_jax import precision
from samplernn_jax import sampler as sampler_lib
from samplernn_jax import train
from samplernn_jax import workdir as workdir_lib
from samplernn_jax.compat import prism
from tests.conftest import prism_case
from tests.conftest import quiet_tiny
from tests.conftest import synthesize_corpus

# No matmul of the bfloat16 train step may have a float32 operand with more elements than
# this: none at all. At the tiny config's sizes the smallest matmuls (an input projection,
# 64 x 2) would hide under any bound large enough to matter, and a dot that quietly went
# back to float32 (a weight gradient, a fold) is as wrong at every size.
MAX_FLOAT32_OPERAND_ELEMENTS = 0
REL_L2 = 2e-2  # bfloat16 logits against float32 ones: ~8 bits of mantissa per operand.


def rel_l2(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def step_dots(name, dtype, **overrides):
  config = scaling_lib.config_for(name, dtype=dtype, **overrides)
  return dots_lib.train_step_dots(config)


# ----- The program ------------------------------------------------------------------------


@pytest.mark.parametrize('name,overrides', [('tiny', {}), ('default', {'batch_size': 8})])
def test_every_matmul_of_the_bf16_step_is_bf16_with_f32_accumulation(name, overrides):
  dots = step_dots(name, 'bfloat16', **overrides)
  wide = dots_lib.wide(dots, MAX_FLOAT32_OPERAND_ELEMENTS)
  assert not wide, '\n'.join(f'{d.where}: {d.dtypes} {d.lhs_shape} x {d.rhs_shape}' for d in wide)
  assert all(d.out_dtype == 'f32' for d in dots), {d.dtypes for d in dots}
  # The same matmuls as float32 (forward, backward, the folds): none was dropped or added.
  f32 = step_dots(name, 'float32', **overrides)
  assert sorted((d.flops, d.executions) for d in dots) == sorted(
    (d.flops, d.executions) for d in f32
  )


def test_the_check_flags_float32_matmuls():
  dots = step_dots('tiny', 'float32')
  # Every matmul of the float32 step: forward, the custom backward passes, the folds.
  assert len(dots_lib.wide(dots, MAX_FLOAT32_OPERAND_ELEMENTS)) == len(dots) > 40
  where = ' '.join(d.where for d in dots)
  for part in ('bwd', 'layer_1.scan', 'from_frames', 'output_proj', 'upsampled'):
    assert part in where, part


def test_scan_bodies_run_once_per_frame():
  # Tiny: B=4, seq_len 32, frames of 2 and 8: 16 and 4 GRU steps per layer and direction.
  runs = sorted(d.executions for d in step_dots('tiny', 'bfloat16') if 'scan' in d.where)
  assert runs.count(16) == 4 and runs.count(4) == 4, runs


# ----- The numbers ------------------------------------------------------------------------


@pytest.mark.parametrize(
  'spec,shape_a,shape_b',
  [
    ('ni,io->no', (6, 5), (5, 7)),  # precision.matmul.
    ('qe,fed->fqd', (9, 9), (2, 9, 4)),  # The folds of SampleMLP.from_frames.
    ('fqd,de->fqe', (2, 9, 4), (4, 4)),
    ('rde,ef->drf', (3, 4, 5), (5, 4)),  # Output transposed: XLA:CPU's failing form as one dot.
  ],
)
@pytest.mark.parametrize('jit', [False, True])
def test_bf16_einsum_and_its_gradients(spec, shape_a, shape_b, jit):
  ka, kb, kg = jax.random.split(jax.random.key(0), 3)
  a, b = jax.random.normal(ka, shape_a), jax.random.normal(kb, shape_b)
  g = jax.random.normal(kg, jnp.einsum(spec, a, b).shape)

  def value_and_grads(dtype):
    out, vjp = jax.vjp(lambda a, b: precision.einsum(spec, a, b, dtype), a, b)
    return (out,) + vjp(g)

  fn = jax.jit(value_and_grads, static_argnums=0) if jit else value_and_grads
  want = fn(jnp.float32)
  got = fn(jnp.bfloat16)
  for x, y in zip(got, want):
    assert x.dtype == jnp.float32 and x.shape == y.shape
    assert rel_l2(x, y) < REL_L2
  with pytest.raises(ValueError, match='contracted'):
    precision.einsum('bij,bjk->bik', a, b, jnp.bfloat16)  # A batch index: not supported.


def prism_model(case, tmp_path, dtype):
  d = prism_case(case)
  params, config = prism.import_checkpoint(
    str(d / 'model.ckpt-1'), str(d / 'prism.config.json'), str(tmp_path / case), step=1
  )
  config.model.dtype = dtype
  return params, config, np.load(d / 'reference.npz')


@pytest.mark.parametrize('case', ['gru_mulaw', 'lstm_linear_skip'])
def test_bf16_logits_near_float32_on_prism_checkpoints(case, tmp_path):
  params, config, ref = prism_model(case, tmp_path, 'bfloat16')
  x1 = ref['x1'][..., 0]
  logits = {}
  for dtype in ('float32', 'bfloat16'):
    config.model.dtype = dtype
    model = model_lib.from_config(config.model)
    carry = model.apply({'params': params}, x1.shape[0], method=model_lib.SampleRNN.initial_carry)
    logits[dtype] = jax.jit(lambda p, x, c: model.apply({'params': p}, x, c)[1])(params, x1, carry)
  assert logits['bfloat16'].dtype == jnp.float32
  assert rel_l2(logits['bfloat16'], logits['float32']) < REL_L2
  assert rel_l2(logits['bfloat16'], ref['logits1']) < REL_L2  # PRiSM's own float32 logits.
  assert rel_l2(logits['float32'], ref['logits1']) < 1e-4  # float32 stays exact.


@pytest.mark.parametrize('case', ['gru_mulaw', 'lstm_linear_skip'])
def test_bf16_sampler_teacher_forced_near_bf16_model(case, tmp_path):
  params, config, ref = prism_model(case, tmp_path, 'bfloat16')
  model = model_lib.from_config(config.model)
  x = jnp.asarray(ref['x1'][:2, : 3 * model.big_frame_size, 0])
  carry = model.apply({'params': params}, 2, method=model_lib.SampleRNN.initial_carry)
  want = jax.jit(lambda p, x, c: model.apply({'params': p}, x, c)[1])(params, x, carry)
  for fold_upper in (False, True):
    # bfloat16 on purpose: at batch 2 a CPU would generate in float32 (backend.py).
    sampler = sampler_lib.Sampler(
      config.model, 2, dtype='bfloat16', sample_unroll=1, fold_upper_upsampling=fold_upper
    )
    assert sampler.model.dtype == jnp.bfloat16
    got = sampler.teacher_force(params, x)
    assert rel_l2(got, want) < REL_L2, fold_upper


# ----- Training ---------------------------------------------------------------------------

STEPS = 100  # One epoch of the corpus below.
EPOCHS = 2  # Enough for the loss to fall well below its start, log(256).


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  return synthesize_corpus(tmp_path_factory, seconds=0.2)


def tiny(dtype, num_epochs=EPOCHS):
  # lr 3e-3: learns visibly within one epoch.
  config = quiet_tiny(num_epochs=num_epochs, learning_rate=3e-3)
  config.model.dtype = dtype
  return config


@pytest.fixture(scope='module')
def runs(tmp_path_factory, corpus, module_compilation_cache):
  """``EPOCHS`` epochs in each dtype: same data, same initial parameters."""
  del module_compilation_cache
  out = {}
  for dtype in ('float32', 'bfloat16'):
    workdir = tmp_path_factory.mktemp(dtype) / 'run'
    out[dtype] = (workdir, train.train_and_evaluate(tiny(dtype), str(workdir), corpus))
  return out


@pytest.mark.slow
def test_bf16_training_tracks_float32(runs):
  f32, bf16 = runs['float32'][1], runs['bfloat16'][1]
  assert f32['loss'] < np.log(256) - 0.5  # It learned: the bound below is not idle.
  for key in ('loss', 'val_loss'):
    assert abs(bf16[key] - f32[key]) < 0.02 * f32[key], (key, bf16[key], f32[key])


@pytest.mark.slow
@pytest.mark.parametrize('first,then', [('float32', 'bfloat16'), ('bfloat16', 'float32')])
def test_resume_in_the_other_dtype(runs, tmp_path, corpus, first, then):
  workdir = tmp_path / 'run'
  shutil.copytree(runs[first][0], workdir)
  final = train.train_and_evaluate(tiny(then, num_epochs=EPOCHS + 1), str(workdir), corpus)
  assert np.isfinite(final['loss']) and final['loss'] < runs[first][1]['loss'] + 0.1
  params, config, step = checkpoint_lib.restore_params(str(workdir))
  assert step == (EPOCHS + 1) * STEPS and config.model.dtype == then
  assert {str(a.dtype) for a in jax.tree.leaves(params)} == {'float32'}
  epochs = workdir_lib.read_records(str(workdir), 'epoch')
  assert [r['step'] for r in epochs] == [e * STEPS for e in range(1, EPOCHS + 2)]
