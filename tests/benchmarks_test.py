"""The benchmark suite's quick mode on the tiny config, so the harness cannot rot.

Set SAMPLERNN_PRISM_DIR to a PRiSM SampleRNN checkout to also run the reference side.
"""

import contextlib
import functools
import io
import json
import math
import os

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import pytest

from benchmarks import flops
from benchmarks import run
from samplernn_jax import model as model_lib
from tests.conftest import load_config


def _run_cli(tmp_path, extra=()):
  out = tmp_path / 'results' / 'quick_tiny'
  argv = ['run', '--suite=quick', '--configs=tiny', '--rounds=1', f'--out={out}', *extra]
  flags.FLAGS(argv)
  stdout = io.StringIO()
  try:
    with contextlib.redirect_stdout(stdout):
      run.main(argv[:1])
  finally:
    flags.FLAGS.unparse_flags()
  with open(f'{out}.json') as f:
    results = json.load(f)
  return results, stdout.getvalue(), out


@pytest.fixture(scope='module')
def quick_tiny(tmp_path_factory):
  return _run_cli(tmp_path_factory.mktemp('bench'), ['--dtype=float32,bfloat16'])


def _positive(x):
  return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_json_has_machine_and_peak(quick_tiny):
  results, _, _ = quick_tiny
  machine = results['machine']
  for key in ('cpu_model', 'cpu_cores', 'jax_devices', 'jax', 'jaxlib', 'flax', 'tensorflow',
              'date', 'amx_bf16', 'avx512_bf16'):
    assert key in machine, key
  assert ('gpu_name' in machine) == (machine['jax_backend'] == 'gpu')
  assert _positive(results['matmul_peak']['flops_per_sec'])
  assert results['dtypes'] == ['float32', 'bfloat16'] and results['dtype'] == 'float32'
  for dtype in results['dtypes']:
    assert results['matmul_peaks'][dtype]['dtype'] == dtype
    assert _positive(results['matmul_peaks'][dtype]['flops_per_sec'])
  assert 'note' in results['reference']  # No --prism_dir: says how to get the reference.


def test_every_figure_is_positive(quick_tiny):
  results, _, _ = quick_tiny
  c = results['configs']['tiny']
  assert _positive(c['flops']['train_per_sample']) and _positive(c['flops']['generate_per_sample'])
  train = c['train']['ours']
  for key in ('sec_per_step', 'samples_per_sec', 'compile_sec', 'achieved_flops_per_sec',
              'fraction_of_peak'):
    assert _positive(train[key]), (key, train[key])
  for batch in (1, 2):
    gen = c['generate'][f'batch_{batch}']['ours']
    for key in ('samples_per_sec_per_sequence', 'samples_per_sec_total', 'x_real_time',
                'achieved_flops_per_sec', 'first_call_sec'):
      assert _positive(gen[key]), (batch, key, gen[key])
    assert gen['samples_per_sec_total'] == pytest.approx(
        batch * gen['samples_per_sec_per_sequence'])
  assert _positive(c['pipeline']['ours']['samples_per_sec'])


def test_each_dtype_is_measured(quick_tiny):
  results, _, out = quick_tiny
  c = results['configs']['tiny']
  parts = [c['train']] + [c['generate'][f'batch_{b}'] for b in (1, 2)]
  for part in parts:
    assert set(part['ours_by_dtype']) == {'float32', 'bfloat16'}
    assert part['ours'] == part['ours_by_dtype']['float32']  # The first --dtype.
    for figures in part['ours_by_dtype'].values():
      assert _positive(figures['executed_flops_per_sec'])
      assert _positive(figures['fraction_of_peak'])
  train = c['train']['ours_by_dtype']
  assert train['bfloat16']['fraction_of_peak'] == pytest.approx(
      train['bfloat16']['executed_flops_per_sec']
      / results['matmul_peaks']['bfloat16']['flops_per_sec'])
  with open(f'{out}.md') as f:
    table = f.read()
  assert 'train samples/s [bfloat16]' in table and 'train samples/s [float32]' in table
  assert 'AMX-BF16: ' in table or 'GPU: ' in table
  assert 'bfloat16 ' in table.split('|')[0]  # The header names both peaks.


def test_peak_shares_and_ratios_are_per_dtype(quick_tiny):
  """Against one PRiSM figure (float32 peak), each dtype with its own peak; in the table too."""
  results = json.loads(json.dumps(quick_tiny[0]))
  train = results['configs']['tiny']['train']
  train['reference'] = {'executed_flops_per_sec': 1.0, 'samples_per_sec': 2.0}
  for dtype, speed in (('float32', 4.0), ('bfloat16', 6.0)):
    train['ours_by_dtype'][dtype].update(executed_flops_per_sec=1.5 * speed, samples_per_sec=speed)
  run._peak_shares(results['configs']['tiny'], {'float32': 10.0, 'bfloat16': 20.0}, 'float32')
  assert train['ours_by_dtype']['bfloat16']['fraction_of_peak'] == pytest.approx(0.45)
  assert train['reference']['fraction_of_peak'] == pytest.approx(0.1)
  assert train['ratio_by_dtype']['bfloat16']['samples_per_sec'] == pytest.approx(3.0)
  assert train['ratio'] == train['ratio_by_dtype']['float32']
  table = run.markdown(results)
  assert '| train samples/s [bfloat16] | 6 | 2 | 3 |' in table, table


def test_the_header_names_the_tensorflow_build_and_its_device():
  ref = {'prism_dir': '/prism', 'prism_commit': 'f05a772d', 'tensorflow': '2.21.0',
         'tensorflow_distribution': 'tensorflow 2.21.0', 'tensorflow_cuda_build': True,
         'tensorflow_device': 'CPU'}
  line = run._reference_line(ref, {'jax_backend': 'gpu'})
  assert 'TensorFlow 2.21.0 (tensorflow 2.21.0, CUDA build) on the CPU' in line
  assert 'tensorflow[and-cuda]' in line  # JAX on a GPU against PRiSM on the CPU: said.
  assert 'and-cuda' not in run._reference_line(ref, {'jax_backend': 'cpu'})
  ref['tensorflow_cuda_build'] = False
  assert 'CPU-only build' in run._reference_line(ref, {'jax_backend': 'cpu'})


def test_tensorflow_build_names_its_distribution():
  tf = pytest.importorskip('tensorflow')
  from benchmarks import reference  # pylint: disable=g-import-not-at-top
  build = reference.tensorflow_build(tf)
  assert build['tensorflow'] == tf.__version__
  assert f' {tf.__version__}' in build['tensorflow_distribution']
  assert isinstance(build['tensorflow_cuda_build'], bool)


def test_bad_dtype_list_is_one_clear_error(tmp_path):
  for bad in ('float16', 'float32,float32', ''):
    with pytest.raises(app.UsageError, match='--dtype'):
      _run_cli(tmp_path, [f'--dtype={bad}'])


def test_xla_agrees_with_the_formula(quick_tiny):
  results, _, _ = quick_tiny
  train = results['configs']['tiny']['train']
  # Elementwise work, left out of the formula, is a large share only at tiny sizes.
  assert 0.9 < train['xla_over_formula'] < 1.5, train


def test_markdown_is_written_and_printed_last(quick_tiny):
  _, stdout, out = quick_tiny
  with open(f'{out}.md') as f:
    table = f.read()
  assert '| tiny' in table and 'train samples/s' in table
  assert stdout.rstrip().endswith(table.rstrip())
  assert "pip install -e '.[reference]'" in stdout


def test_flop_formula_by_hand():
  m = load_config('default').model  # D 1024, Q 256, frames (16, 64), 4 GRU layers.
  d, q, gru = 1024, 256, 3
  mlp = 16 * q * d + 2 * d * d + d * q
  tier1 = (64 * d + 4 * gru * 2 * d * d + 4 * d * d) / 64
  tier0 = (16 * d + 4 * gru * 2 * d * d + 16 * d * d) / 16
  assert flops.forward_macs_per_sample(m) == pytest.approx(mlp + tier0 + tier1)
  assert flops.train_flops_per_sample(m) == pytest.approx(6 * (mlp + tier0 + tier1))
  assert flops.generate_flops_per_sample(m) == pytest.approx(2 * (mlp + tier0 + tier1))


@pytest.mark.parametrize('fold_upper', [True, False])
def test_sampler_flop_formula_matches_xla(fold_upper):
  """executed_generate_flops_per_sample against XLA's count of one frame of each tier."""
  m = load_config('default').model
  m.dim, m.frame_sizes = 128, (4, 8, 32)
  model = model_lib.from_config(m)
  params = jax.eval_shape(lambda: model_lib.init_params(model, jax.random.key(0)))
  folded = jax.eval_shape(functools.partial(model.fold, fold_upper_upsampling=fold_upper), params)
  carry = jax.eval_shape(lambda p: model.apply(
      {'params': p}, 1, method=model_lib.SampleRNN.initial_carry), params)
  total = m.dim * m.dim + m.dim * m.q_levels  # hidden2 + output, per sample.
  tiers, _ = model.step_modules()
  for j, f in enumerate(m.frame_sizes):
    cond = None if j == len(m.frame_sizes) - 1 else jax.ShapeDtypeStruct((1, 3 * m.dim),
                                                                         jnp.float32)
    compiled = jax.jit(tiers[j].step).lower(
        folded['frame_tiers'][j], jax.ShapeDtypeStruct((1, f), jnp.int32), cond,
        carry[j]).compile()
    total += compiled.cost_analysis()['flops'] / 2 / f
  want = flops.executed_generate_flops_per_sample(m, fold_upper_upsampling=fold_upper)
  # XLA also counts the gates' elementwise work: under 1% here.
  assert 2 * total == pytest.approx(want, rel=0.01)
  assert want < flops.generate_flops_per_sample(m)


def test_quick_shrinks_and_full_keeps_shapes():
  quick = run.suite_config(run.load_config('small'), run.SUITES['quick'], 'bfloat16')
  assert (quick.model.dim, quick.train.batch_size, quick.data.seq_len) == (16, 4, 128)
  assert quick.model.dtype == 'bfloat16'
  full = run.suite_config(run.load_config('default'), run.SUITES['full'], 'float32')
  assert (full.model.dim, full.train.batch_size, full.data.seq_len) == (1024, 64, 1024)
  assert run.load_config('small').model.dim == 256


def test_remote_reference_says_why_a_checkout_is_unusable(tmp_path):
  # The worker process checks the folder before importing TensorFlow, so this is quick.
  from benchmarks import reference  # pylint: disable=g-import-not-at-top
  with pytest.raises(reference.ReferenceUnavailable, match='not a PRiSM SampleRNN checkout'):
    reference.RemotePrism(str(tmp_path))
  with pytest.raises(reference.ReferenceUnavailable, match='no --prism_dir'):
    reference.RemotePrism(None)


@pytest.mark.skipif(not os.environ.get('SAMPLERNN_PRISM_DIR'),
                    reason='set SAMPLERNN_PRISM_DIR to a PRiSM checkout to run the reference')
def test_reference_side(tmp_path):
  pytest.importorskip('tensorflow')
  results, _, _ = _run_cli(tmp_path, [f"--prism_dir={os.environ['SAMPLERNN_PRISM_DIR']}",
                                      '--parts=train,generate'])
  c = results['configs']['tiny']
  assert _positive(c['train']['reference']['samples_per_sec'])
  assert _positive(c['train']['ratio']['samples_per_sec'])
  assert _positive(c['generate']['batch_1']['reference']['samples_per_sec_per_sequence'])
