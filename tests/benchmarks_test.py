"""The benchmark suite's quick mode on the tiny config, so the harness cannot rot; the FLOP
formula and the compiled program's FLOP count; the scaling model.

Set SAMPLERNN_PRISM_DIR to a PRiSM SampleRNN checkout to also run the reference side.
"""

import contextlib
import functools
import io
import json
import math
import os
import subprocess
import sys

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import pytest

from benchmarks import compare
from benchmarks import flops
from benchmarks import hlo
from benchmarks import run
from benchmarks import scaling_lib
from samplernn_jax import model as model_lib
from tests.conftest import REPO
from tests.conftest import load_config

# The quick suites below compile the same tiny steps: the second reads the first's.
pytestmark = pytest.mark.usefixtures('module_compilation_cache')


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


@pytest.fixture(scope='module')
def quick_forms(tmp_path_factory):
  return _run_cli(
    tmp_path_factory.mktemp('bench_forms'), ['--parts=train', '--rnn_form=layered,wavefront']
  )


def _positive(x):
  return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_json_has_machine_and_peak(quick_tiny):
  results, _, _ = quick_tiny
  machine = results['machine']
  for key in (
    'cpu_model',
    'cpu_cores',
    'jax_devices',
    'jax',
    'jaxlib',
    'flax',
    'tensorflow',
    'date',
    'amx_bf16',
    'avx512_bf16',
  ):
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
  for key in (
    'sec_per_step',
    'samples_per_sec',
    'compile_sec',
    'achieved_flops_per_sec',
    'fraction_of_peak',
  ):
    assert _positive(train[key]), (key, train[key])
  for batch in (1, 2):
    gen = c['generate'][f'batch_{batch}']['ours']
    for key in (
      'samples_per_sec_per_sequence',
      'samples_per_sec_total',
      'x_real_time',
      'achieved_flops_per_sec',
      'first_call_sec',
    ):
      assert _positive(gen[key]), (batch, key, gen[key])
    assert gen['samples_per_sec_total'] == pytest.approx(
      batch * gen['samples_per_sec_per_sequence']
    )
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
    / results['matmul_peaks']['bfloat16']['flops_per_sec']
  )
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
  ref = {
    'prism_dir': '/prism',
    'prism_commit': 'f05a772d',
    'tensorflow': '2.21.0',
    'tensorflow_distribution': 'tensorflow 2.21.0',
    'tensorflow_cuda_build': True,
    'tensorflow_device': 'CPU',
  }
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


def test_auto_is_this_backends_form(quick_tiny):
  results, _, _ = quick_tiny
  assert results['rnn_forms'] == [results['rnn_form_auto']]
  train = results['configs']['tiny']['train']
  assert list(train['ours_by_form']) == results['rnn_forms']
  assert train['ours_by_form'][results['rnn_form_auto']] == train['ours_by_dtype']


def test_each_form_is_timed_and_read(quick_forms):
  results, _, out = quick_forms
  train = results['configs']['tiny']['train']
  assert results['rnn_forms'] == ['layered', 'wavefront']
  for form in ('layered', 'wavefront'):
    assert _positive(train['ours_by_form'][form]['float32']['sec_per_step'])
  program = train['program_by_form']
  # Quick tiny: windows of 16 samples, tiers of 8 and 2 frames, 2 layers; forward, backward.
  assert program['layered']['depth'] == 2 * 2 * (8 + 2)
  assert program['wavefront']['depth'] == 2 * ((8 + 1) + (2 + 1))
  assert train['ours_by_form']['wavefront']['float32']['depth'] == program['wavefront']['depth']
  with open(f'{out}.md') as f:
    table = f.read()
  assert 'train s/step [wavefront]' in table and 'train s/step [layered]' in table
  assert '| train step [wavefront]: depth, executed FLOPs/step | 24 dependent loop' in table


def test_compare_lists_every_form_and_run(quick_tiny, quick_forms):
  table = compare.markdown({'dtypes': quick_tiny[0], 'forms': quick_forms[0]})
  assert '| tiny | float32 | wavefront | forms |' in table
  assert '| tiny | bfloat16 | layered | dtypes |' in table
  assert '| tiny | float32 | 1 | dtypes |' in table  # Generation: quick_forms measured none.


@pytest.mark.parametrize('fixture', ['quick_tiny', 'quick_forms'])
def test_compiled_flops_agree_with_the_formula(fixture, request):
  """The compiled step's matmul FLOPs (loop bodies times their trips) against flops.py."""
  results, _, _ = request.getfixturevalue(fixture)
  for form, program in results['configs']['tiny']['train']['program_by_form'].items():
    assert program['compiled_over_formula'] == pytest.approx(1, abs=2e-3), (form, program)


def test_bad_rnn_form_list_is_one_clear_error(tmp_path):
  for bad in ('diagonal', 'layered,layered', ''):
    with pytest.raises(app.UsageError, match='--rnn_form'):
      _run_cli(tmp_path, [f'--rnn_form={bad}'])


def test_matmul_flops_count_loop_bodies_times_their_trips():
  def scan(x, w):
    return jax.lax.scan(lambda h, _: (jnp.tanh(h @ w), None), x, None, length=10)[0]

  compiled = jax.jit(scan).lower(jnp.ones((8, 64)), jnp.ones((64, 64))).compile()
  assert hlo.matmul_flops(compiled.as_text()) == 10 * 2 * 8 * 64 * 64

  def conv_and_batched(x, k, a, b):
    return (
      jax.lax.conv_general_dilated(x, k, (1,), 'VALID').sum()
      + jnp.einsum('lbi,lio->lbo', a, b).sum()
    )

  compiled = (
    jax.jit(conv_and_batched)
    .lower(jnp.ones((2, 3, 10)), jnp.ones((5, 3, 4)), jnp.ones((4, 8, 16)), jnp.ones((4, 16, 32)))
    .compile()
  )
  # conv: 2 x [2, 5, 7] outputs x 3 features x 4 taps; batched: 2 x [4, 8, 32] x 16.
  assert hlo.matmul_flops(compiled.as_text()) == 2 * 70 * 12 + 2 * 4 * 8 * 32 * 16


def test_matmul_flops_read_cublas_calls():
  """XLA:GPU's cuBLAS calls carry the dot's dimensions in their backend config."""
  text = '\n'.join(
    [
      'ENTRY %main (p0: f32[64,1024], p1: f32[1024,3072]) -> f32[64,3072] {',
      '  %p0 = f32[64,1024]{1,0} parameter(0)',
      '  %p1 = f32[1024,3072]{1,0} parameter(1)',
      '  %gemm = (f32[64,3072]{1,0}, s8[4194304]{0}) custom-call(%p0, %p1), '
      'custom_call_target="__cublas$gemm", backend_config={"gemm_backend_config":{'
      '"dot_dimension_numbers":{"lhs_contracting_dimensions":["1"],'
      '"rhs_contracting_dimensions":["0"],"lhs_batch_dimensions":[],'
      '"rhs_batch_dimensions":[]}}}',
      '  ROOT %out = f32[64,3072]{1,0} get-tuple-element(%gemm), index=0',
      '}',
    ]
  )
  assert hlo.matmul_flops(text) == 2 * 64 * 3072 * 1024


def test_markdown_is_written_and_printed_last(quick_tiny):
  _, stdout, out = quick_tiny
  with open(f'{out}.md') as f:
    table = f.read()
  assert '| tiny' in table and 'train samples/s' in table
  assert stdout.rstrip().endswith(table.rstrip())
  assert "pip install -e '.[reference]'" in stdout


def test_wavefront_ramp_in_the_executed_formula():
  m = load_config('default').model  # Tiers of 64 and 16 frames per 1024 samples, 4 layers.
  d, gru, layers, batch = 1024, 3, 4, 64
  layered = flops.train_flops_per_step(m, batch, 1024, form='implemented', rnn_form='layered')
  wavefront = flops.train_flops_per_step(m, batch, 1024, form='implemented', rnn_form='wavefront')
  looped = (2 * layers - 1) * gru * d * d  # h @ W_hh of every layer, x @ W_ih of layers 1..3.
  # Three extra steps per tier and window, forward + input gradient + weight gradient.
  assert wavefront - layered == pytest.approx(2 * 3 * looped * batch * 3 * 2)
  assert flops.train_flops_per_step(
    m, batch, 1024, form='model', rnn_form='wavefront'
  ) == pytest.approx(flops.train_flops_per_step(m, batch, 1024, form='model', rnn_form='layered'))
  with pytest.raises(ValueError, match='auto'):
    flops.train_flops_per_step(m, batch, 1024, form='implemented', rnn_form='auto')


def test_modeled_time_adds_depth_flops_and_link():
  collectives = {k: {'ring_bytes_per_device': 0.0} for k in scaling_lib.COLLECTIVES}
  link = dict(collectives, **{'all-reduce': {'ring_bytes_per_device': 360e6}})
  result = {
    'batch_size': 64,
    'dtype': 'bfloat16',
    'flops_per_row': 8e12 / 64,
    'devices': {
      '1': {'depth': 100, 'flops_per_device': 8e12, 'collectives': collectives},
      '8': {'depth': 100, 'flops_per_device': 1e12, 'collectives': link},
    },
  }
  scaling_lib.with_modeled_times(result, 'H100')
  latency = scaling_lib.MODEL['iteration_sec']['value']
  rate = 989.5e12 * scaling_lib.MODEL['matmul_fraction']['value']
  one, eight = result['devices']['1']['modeled'], result['devices']['8']['modeled']
  assert one['step_sec'] == pytest.approx(100 * latency + 8e12 / rate)
  assert eight['link_sec'] == pytest.approx(360e6 / (450e9 * 0.8))
  assert result['devices']['8']['time_efficiency'] == pytest.approx(
    one['step_sec'] / (8 * eight['step_sec'])
  )
  assert result['devices']['8']['time_efficiency'] < 1
  # FLOP term >= depth term: rows x (8e12 / 64) / rate >= 100 x latency.
  rows = result['rows_per_device_for_flop_term_at_least_depth_term']
  assert (rows - 1) * 8e12 / 64 / rate < 100 * latency <= rows * 8e12 / 64 / rate
  assert 'H200' in scaling_lib.parameters_markdown('float32')


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
  carry = jax.eval_shape(
    lambda p: model.apply({'params': p}, 1, method=model_lib.SampleRNN.initial_carry), params
  )
  total = m.dim * m.dim + m.dim * m.q_levels  # hidden2 + output, per sample.
  tiers, _ = model.step_modules()
  for j, f in enumerate(m.frame_sizes):
    cond = (
      None if j == len(m.frame_sizes) - 1 else jax.ShapeDtypeStruct((1, 3 * m.dim), jnp.float32)
    )
    compiled = (
      jax.jit(tiers[j].step)
      .lower(folded['frame_tiers'][j], jax.ShapeDtypeStruct((1, f), jnp.int32), cond, carry[j])
      .compile()
    )
    total += compiled.cost_analysis()['flops'] / 2 / f
  want = flops.executed_generate_flops_per_sample(m, fold_upper_upsampling=fold_upper)
  # XLA also counts the gates' elementwise work: under 1% here.
  assert 2 * total == pytest.approx(want, rel=0.01)
  assert want < flops.generate_flops_per_sample(m)


def test_quick_shrinks_and_full_keeps_shapes():
  quick = run.suite_config(run.load_config('small'), run.SUITES['quick'], 'bfloat16', 'wavefront')
  assert (quick.model.dim, quick.train.batch_size, quick.data.seq_len) == (16, 4, 128)
  assert (quick.model.dtype, quick.model.rnn_form) == ('bfloat16', 'wavefront')
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


@pytest.mark.skipif(
  not os.environ.get('SAMPLERNN_PRISM_DIR'),
  reason='set SAMPLERNN_PRISM_DIR to a PRiSM checkout to run the reference',
)
def test_reference_side(tmp_path):
  pytest.importorskip('tensorflow')
  results, _, _ = _run_cli(
    tmp_path, [f"--prism_dir={os.environ['SAMPLERNN_PRISM_DIR']}", '--parts=train,generate']
  )
  c = results['configs']['tiny']
  assert _positive(c['train']['reference']['samples_per_sec'])
  assert _positive(c['train']['ratio']['samples_per_sec'])
  assert _positive(c['generate']['batch_1']['reference']['samples_per_sec_per_sequence'])


@pytest.mark.slow
def test_scaling_command_models_time_per_form(tmp_path):
  out = tmp_path / 'scaling'
  subprocess.run(
    [
      sys.executable,
      '-m',
      'benchmarks.scaling',
      '--config=tiny',
      '--batch_sizes=4',
      '--devices=1,2',
      '--rnn_form=wavefront',
      '--gpu=H100',
      f'--out={out}',
    ],
    check=True,
    capture_output=True,
    cwd=REPO,
  )
  result = json.loads((tmp_path / 'scaling.json').read_text())
  (run_result,) = result['runs']
  assert (run_result['rnn_form'], run_result['modeled_gpu']) == ('wavefront', 'H100')
  two = run_result['devices']['2']
  assert two['depth'] == 2 * (5 + 17) and two['collectives']['all-reduce']['count'] == 1
  assert 0 < two['time_efficiency'] < two['efficiency'] <= 1.01
  table = (tmp_path / 'scaling.md').read_text()
  assert 'time efficiency' in table and 'NVIDIA H100 Tensor Core GPU datasheet' in table
