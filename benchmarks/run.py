r"""Throughput of this project against PRiSM SampleRNN (TF2), A/B on the same machine.

    python -m benchmarks.run --suite=quick|full [--prism_dir=PATH]
        [--out=benchmarks/results/NAME] [--dtype=float32,bfloat16]
        [--rnn_form=layered,wavefront] [--profile_dir=DIR]

For each config (``--configs``, default ``default,two_tier,small``; ``small`` is default
with dim 256) it measures training, generation for 1 and 32 sequences (quick: 1 and 2),
the input pipeline and FLOPs (``benchmarks/flops.py``). ``--suite=full`` uses the real
shapes (batch 64, seq_len 1024); ``quick`` shrinks dim by 16 (at least 16), batch to 4 and
seq_len to two big frames, to check the harness in seconds.

Each figure is measured in ``--rounds`` rounds alternating this project (A) and PRiSM (B):
A B A B ...; a figure is the median over its rounds, so machine load drifting during the run
hits both sides alike. With several ``--dtype`` each round runs every dtype of ours, then
PRiSM once (float32): A(float32) A(bfloat16) B ...; each share of the matmul peak is of the
peak measured in that side's dtype. Each ``--rnn_form`` (how the stacked RNNs scan, see
``samplernn_jax/wavefront.py``) is one more side of the train step, and every form's compiled
step is read: its depth (dependent loop iterations, ``benchmarks.hlo.loop_depth``) beside its
matmul FLOPs (``benchmarks.hlo.matmul_flops``, checked against ``benchmarks/flops.py``).
Generation does not depend on the form: it is measured once per dtype. Ratios are
``ours / reference`` for every figure; throughputs are higher-is-better (``x_real_time`` too:
audio seconds per wall second of one sequence, "0.81x real time"), times lower-is-better
(``ratio_higher_is_better`` in the JSON says which). Writes ``--out``.json and ``--out``.md;
the table is printed last. ``scripts/benchmark.sh`` runs the full suite against a PRiSM
checkout; docs/benchmarks.md says what each figure means.
"""

import contextlib
import functools
import json
import os
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
import numpy as np

from benchmarks import flops as flops_lib
from benchmarks import machine
from benchmarks import named_configs
from benchmarks import reference as reference_lib
from benchmarks import scaling_lib
from benchmarks.input_pipeline import measure_pipeline
from benchmarks.train_step import benchmark_train_step
from samplernn_jax import backend
from samplernn_jax import config as config_lib
from samplernn_jax import metrics
from samplernn_jax import model as model_lib
from samplernn_jax import rnn as rnn_lib
from samplernn_jax import sampler as sampler_lib
from samplernn_jax.corpus.demo_corpus import synthesize

Side = Tuple[str, str]  # (rnn form, dtype) of a train step measured.


def _source(fn: Callable) -> str:
  return f'{fn.__module__}.{fn.__qualname__}'


_SUITE = flags.DEFINE_enum(
  'suite',
  'quick',
  ['quick', 'full'],
  'quick: tiny shapes, few steps (checks the harness); full: real shapes.',
)
_CONFIGS = flags.DEFINE_list(
  'configs',
  ['default', 'two_tier', 'small'],
  'Configs: files of configs/ by name (default, two_tier, small, tiny, '
  '...); small is the default at dim 256.',
)
_PRISM_DIR = flags.DEFINE_string(
  'prism_dir',
  None,
  'Checkout of PRiSM SampleRNN (commit f05a772) to measure as '
  'the reference; without it only this project runs.',
)
_OUT = flags.DEFINE_string('out', None, 'Path prefix of the results: writes OUT.json, OUT.md.')
_DTYPE = flags.DEFINE_list(
  'dtype',
  ['float32'],
  'config.model.dtype of this project, one or several '
  '(--dtype=float32,bfloat16): each is measured in the same rounds, '
  'against one PRiSM measurement (float32).',
)
_RNN_FORM = flags.DEFINE_list(
  'rnn_form',
  ['auto'],
  'config.model.rnn_form of the train step, one or several '
  '(--rnn_form=layered,wavefront): each is timed in the same rounds '
  "and its compiled step's depth read; auto: this backend's choice "
  '(backend.rnn_form).',
)
_PROFILE_DIR = flags.DEFINE_string(
  'profile_dir',
  None,
  'Write a jax.profiler trace of generation (batch 1) per '
  'config to DIR/CONFIG; view with TensorBoard or Perfetto.',
)
_ROUNDS = flags.DEFINE_integer('rounds', None, 'A/B rounds per figure (default: quick 2, full 3).')
_DATA_DIR = flags.DEFINE_string(
  'data_dir', None, 'wav corpus for the input pipeline (default: synthesized).'
)
_PARTS = flags.DEFINE_list(
  'parts',
  ['train', 'generate', 'pipeline'],
  'What to measure: any of train, generate, pipeline, scaling '
  '(the train step compiled for 1, 2, 4, 8 devices; read, not run).',
)
_PART_NAMES = ('train', 'generate', 'pipeline', 'scaling')


SUITES = {
  # dim_divisor shrinks dim (at least 16); None keeps the config's shapes.
  'quick': dict(
    dim_divisor=16,
    batch_size=4,
    seq_len_big_frames=2,
    train_steps=3,
    generate_batches=(1, 2),
    generate_big_frames=4,
    pipeline_batches=5,
    corpus_seconds=1.0,
    peak_size=512,
    peak_repeats=3,
    rounds=2,
  ),
  'full': dict(
    dim_divisor=None,
    batch_size=64,
    seq_len=1024,
    train_steps=5,
    generate_batches=(1, 32),
    generate_big_frames=64,
    pipeline_batches=500,
    corpus_seconds=8.0,
    peak_size=4096,
    peak_repeats=5,
    rounds=3,
  ),
}

TABLE_HEADER = ['config', 'figure', 'this project', 'PRiSM (TF2)', 'ours / PRiSM']


def load_config(name: str) -> ml_collections.ConfigDict:
  """``configs/NAME.py``'s config (``named_configs``); a missing one is a usage error."""
  try:
    return named_configs.load_config(name)
  except ValueError as e:
    raise app.UsageError(f'--configs: {e}') from e


def suite_config(
  config: ml_collections.ConfigDict, suite: Dict[str, Any], dtype: str, rnn_form: str = 'auto'
) -> ml_collections.ConfigDict:
  """``config`` at the suite's shapes, ``dtype`` and ``rnn_form``, validated."""
  config = ml_collections.ConfigDict(config.to_dict())
  big = int(config.model.frame_sizes[-1])
  if suite['dim_divisor']:
    config.model.dim = max(16, config.model.dim // suite['dim_divisor'])
  config.train.batch_size = suite['batch_size']
  config.data.seq_len = suite.get('seq_len') or suite['seq_len_big_frames'] * big
  config.model.dtype = dtype
  config.model.rnn_form = rnn_form
  return config_lib.validate(config)


def _median(rounds: List[Dict[str, float]], key: str) -> float:
  return float(np.median([r[key] for r in rounds]))


_SETTLE_SEC = 1.0


def _ab(
  ours: Dict[str, Callable[[], Dict[str, float]]],
  ref: Optional[Callable[[], Dict[str, float]]],
  rounds: int,
):
  """Runs rounds of every side of ``ours`` (one per dtype), then the reference: A A' B ...

  Returns ``({side: its rounds}, reference rounds or None)``. Each side starts after a
  pause of ``_SETTLE_SEC`` when the reference runs: thread pools of the side that just ran
  (TensorFlow's and XLA's) keep spinning for a moment after their last op, and would take
  a core from the next side's first moments.
  """
  ours_rounds, ref_rounds = {side: [] for side in ours}, []
  for i in range(rounds):
    for side, measure in ours.items():
      if ref is not None:
        time.sleep(_SETTLE_SEC)
      ours_rounds[side].append(measure())
      logging.info('  round %d ours %s: %s', i, side, _brief(ours_rounds[side][-1]))
    if ref is not None:
      time.sleep(_SETTLE_SEC)
      ref_rounds.append(ref())
      logging.info('  round %d PRiSM: %s', i, _brief(ref_rounds[-1]))
  return ours_rounds, (ref_rounds if ref is not None else None)


def _brief(d: Dict[str, Any]) -> str:
  return ', '.join(f'{k}={v:.4g}' for k, v in d.items() if isinstance(v, float))


def _ratios(ours: Dict[str, float], ref: Optional[Dict[str, float]]) -> Optional[Dict[str, float]]:
  if ref is None:
    return None
  return {k: ours[k] / ref[k] for k in ours if k in ref and ref[k]}


def _by_dtype(part: Dict[str, Any], ours: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
  """``part`` with this project's figures per dtype (``ours_by_dtype``); ``ours`` is the
  first dtype's, as in results with a single dtype."""
  part['ours_by_dtype'] = ours
  part['ours'] = next(iter(ours.values()))
  return part


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------


def bench_train(configs: Dict[Side, ml_collections.ConfigDict], suite, prism) -> Dict[str, Any]:
  """Train steps of ``configs`` (one per (rnn form, dtype), else equal) and of PRiSM, in the same
  rounds; each form's compiled step read for its depth and FLOPs (``program_by_form``)."""
  config = next(iter(configs.values()))
  steps = suite['train_steps']
  batch_size, seq_len = config.train.batch_size, config.data.seq_len
  samples_per_step = batch_size * seq_len
  trainer = None
  if prism is not None:
    logging.info('  PRiSM: building and tracing the train step')
    trainer = prism.trainer(config)
  ours_rounds, ref_rounds = _ab(
    {side: functools.partial(benchmark_train_step, c, steps) for side, c in configs.items()},
    (lambda: trainer.measure(steps)) if trainer else None,
    suite['rounds'],
  )

  per_sample = flops_lib.train_flops_per_sample(config.model)

  def summary(rounds, compile_sec, executed):  # fraction_of_peak: see _peak_shares.
    # executed: what the side really runs per step (PRiSM runs the model as written).
    sec = _median(rounds, 'sec_per_step')
    return {
      'sec_per_step': sec,
      'samples_per_sec': samples_per_step / sec,
      'compile_sec': compile_sec,
      'achieved_flops_per_sec': per_sample * samples_per_step / sec,
      'executed_flops_per_sec': executed / sec,
      'rounds_sec_per_step': [r['sec_per_step'] for r in rounds],
    }

  by_form, program_by_form = {}, {}
  for (form, dtype), rounds in ours_rounds.items():
    formula = flops_lib.train_flops_per_step(
      config.model, batch_size, seq_len, form='implemented', rnn_form=form
    )
    figures = summary(rounds, rounds[0]['compile_sec'], formula)
    figures['source'] = _source(benchmark_train_step)
    figures['depth'] = rounds[0]['depth']
    by_form.setdefault(form, {})[dtype] = figures
    if form not in program_by_form:  # The same loops and matmuls in every dtype.
      compiled = rounds[0]['flops_per_step_compiled']
      program_by_form[form] = {
        'depth': rounds[0]['depth'],
        'loops': rounds[0]['loops'],
        'flops_per_step_compiled': compiled,
        'flops_per_step_formula': formula,
        'compiled_over_formula': compiled / formula,
      }
  result = {
    'steps_per_round': steps,
    'samples_per_step': samples_per_step,
    'flops_per_step_model': per_sample * samples_per_step,
    'program_by_form': program_by_form,
    'ours_by_form': by_form,
  }
  if trainer is not None:
    result['reference'] = summary(ref_rounds, trainer.compile_sec, per_sample * samples_per_step)
    result['reference']['compile_sec_note'] = 'trace + first step'
  return _by_dtype(result, next(iter(by_form.values())))


def _numbers(d: Dict[str, Any]) -> Dict[str, float]:
  return {k: v for k, v in d.items() if isinstance(v, float)}


# ---------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------


def bench_generate(
  configs: Dict[str, ml_collections.ConfigDict], suite, prism, profile_dir: Optional[str]
):
  """Generation with ``configs`` (one per dtype) and with PRiSM, per batch, in the same rounds;
  ``profile_dir`` traces the first dtype's batch 1."""
  config = next(iter(configs.values()))
  model_config = config.model
  big = int(model_config.frame_sizes[-1])
  num_samples = suite['generate_big_frames'] * big
  sample_rate = config.data.sample_rate
  params = model_lib.init_params(model_lib.from_config(model_config), jax.random.key(0))
  per_sample = flops_lib.generate_flops_per_sample(model_config)
  results = {
    'num_samples': num_samples,
    'sample_rate': sample_rate,
    'source': _source(sampler_lib.Sampler.generate),
  }
  for batch in suite['generate_batches']:
    runs, first_call_sec, fold_sec, executed = {}, {}, {}, {}
    for dtype, c in configs.items():
      runs[dtype], first_call_sec[dtype], fold_sec[dtype], executed[dtype] = _generation_run(
        c.model, params, batch, num_samples
      )

    def ours(run):
      per_seq = num_samples / run(num_samples)
      return {'samples_per_sec_per_sequence': per_seq, 'samples_per_sec_total': per_seq * batch}

    generator = None
    if prism is not None:
      logging.info('  PRiSM: building and tracing inference_step for %d sequences', batch)
      generator = prism.generator(config, batch)
    ours_rounds, ref_rounds = _ab(
      {dtype: functools.partial(ours, run) for dtype, run in runs.items()},
      (lambda: generator.measure(num_samples)) if generator else None,
      suite['rounds'],
    )

    def summary(rounds, compile_sec, executed_per_sample):  # fraction_of_peak: _peak_shares.
      per_seq = _median(rounds, 'samples_per_sec_per_sequence')
      return {
        'samples_per_sec_per_sequence': per_seq,
        'samples_per_sec_total': per_seq * batch,
        'x_real_time': metrics.x_real_time(per_seq, 1.0, sample_rate),  # per_seq in 1 s.
        'achieved_flops_per_sec': per_sample * per_seq * batch,
        'executed_flops_per_sec': executed_per_sample * per_seq * batch,
        'first_call_sec': compile_sec,
      }

    entry = {}
    ours_figures = {}
    for dtype, rounds in ours_rounds.items():
      ours_figures[dtype] = summary(rounds, first_call_sec[dtype], executed[dtype])
      ours_figures[dtype]['fold_sec'] = fold_sec[dtype]
    if generator is not None:
      entry['reference'] = summary(ref_rounds, generator.compile_sec, per_sample)
    results[f'batch_{batch}'] = _by_dtype(entry, ours_figures)
    if profile_dir and batch == 1:
      logging.info('  writing a generation trace to %s', profile_dir)
      with jax.profiler.trace(profile_dir):
        runs[next(iter(runs))](num_samples)
      results['profile_dir'] = profile_dir
  return results


def _generation_run(model_config, params, batch: int, num_samples: int):
  """``(run, first_call_sec, fold_sec, executed FLOPs per sample)`` of one sampler:
  ``run(n)`` generates ``n`` samples per sequence and returns its seconds."""
  temps = [0.95] * batch
  key = [0]
  sampler = sampler_lib.Sampler(model_config, batch, chunk_size=num_samples)
  executed = flops_lib.executed_generate_flops_per_sample(
    model_config, fold_upper_upsampling=sampler.spec.fold_upper_upsampling
  )
  # Folding the weights is part of loading a checkpoint, done once per run of
  # samplernn-generate, as PRiSM's model building and loading is; timed apart.
  start = time.perf_counter()
  folded = jax.block_until_ready(sampler.fold(params))
  fold_sec = time.perf_counter() - start

  def run(n):
    key[0] += 1
    start = time.perf_counter()
    sampler.generate(params, n, temps, jax.random.key(key[0]), folded=folded)
    return time.perf_counter() - start

  first_call_sec = run(num_samples)  # Compiles the chunk function.
  return run, first_call_sec, fold_sec, executed


# ---------------------------------------------------------------------------------------
# Input pipeline
# ---------------------------------------------------------------------------------------


def bench_pipeline(config, suite, prism, data_dir: Optional[str]) -> Dict[str, Any]:
  num_batches = suite['pipeline_batches']
  with contextlib.ExitStack() as stack:
    if data_dir is None:
      data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix='samplernn_bench_'))
      # Files are read side by side, one per sequence; twice the batch leaves room for
      # the validation split of this project's pipeline.
      num_files = 2 * config.train.batch_size
      synthesize(
        data_dir, config.data.sample_rate, num_files=num_files, seconds=suite['corpus_seconds']
      )
      corpus = f'synthesized (demo_corpus): {num_files} files x {suite["corpus_seconds"]} s'
    else:
      corpus = data_dir
    ours_rounds, ref_rounds = _ab(
      {
        'pipeline': lambda: {
          'samples_per_sec': float(measure_pipeline(config, data_dir, num_batches))
        }
      },
      (lambda: {'samples_per_sec': prism.measure_pipeline(config, data_dir, num_batches)})
      if prism
      else None,
      suite['rounds'],
    )
  result = {
    'corpus': corpus,
    'batches_per_round': num_batches,
    'ours': {
      'samples_per_sec': _median(ours_rounds['pipeline'], 'samples_per_sec'),
      'source': _source(measure_pipeline),
    },
  }
  if ref_rounds is not None:
    result['reference'] = {'samples_per_sec': _median(ref_rounds, 'samples_per_sec')}
    result['ratio'] = _ratios(_numbers(result['ours']), result['reference'])
  return result


# ---------------------------------------------------------------------------------------
# The suite
# ---------------------------------------------------------------------------------------


def run_suite(
  suite_name: str = 'quick',
  config_names=('default', 'two_tier', 'small'),
  prism_dir: Optional[str] = None,
  dtypes: Sequence[str] = ('float32',),
  profile_dir: Optional[str] = None,
  rounds: Optional[int] = None,
  data_dir: Optional[str] = None,
  parts=('train', 'generate', 'pipeline'),
  rnn_forms: Sequence[str] = ('auto',),
) -> Dict[str, Any]:
  """Measures every config in each of ``dtypes`` (and the train step in each of ``rnn_forms``,
  ``'auto'`` resolved for this backend); returns the results (layout:
  docs/benchmarks.md). PRiSM runs once per config (float32), in the same rounds as every side."""
  dtypes = list(dtypes)
  forms = list(dict.fromkeys(backend.rnn_form(f) for f in rnn_forms))
  suite = dict(SUITES[suite_name])
  if rounds:
    suite['rounds'] = rounds
  prism, reference_note = None, None
  try:
    prism = reference_lib.RemotePrism(prism_dir)
  except reference_lib.ReferenceUnavailable as e:
    reference_note = f'PRiSM reference not measured: {e}'
    print(reference_note, flush=True)
  info = machine.machine_info()
  peak_dtypes = list(dict.fromkeys(['float32'] + dtypes))  # PRiSM's share needs float32's.
  peaks = _measure_peaks(peak_dtypes, suite)
  results = {
    'suite': suite_name,
    'suite_settings': suite,
    'dtype': dtypes[0],
    'dtypes': dtypes,
    'rnn_forms': forms,
    'rnn_form_auto': backend.rnn_form('auto'),
    'machine': info,
    'matmul_peaks': peaks,
    'matmul_peak': peaks['float32'],
    'reference': prism.info() if prism else {'note': reference_note},
    'configs': {},
  }
  for name in config_names:
    sides = {
      (form, dtype): suite_config(load_config(name), suite, dtype, form)
      for form in forms
      for dtype in dtypes
    }
    configs = {dtype: sides[(forms[0], dtype)] for dtype in dtypes}  # Generation: any form.
    config = configs[dtypes[0]]
    m = config.model
    logging.info(
      '== %s: frame_sizes %s, dim %d, %d x %s, batch %d, seq_len %d, %s; %s',
      name,
      tuple(m.frame_sizes),
      m.dim,
      m.num_rnn_layers,
      m.rnn_type,
      config.train.batch_size,
      config.data.seq_len,
      ', '.join(dtypes),
      ', '.join(forms),
    )
    why_not = reference_lib.supports(config)
    config_prism = prism if why_not is None else None
    entry = {
      'model': {k: (list(v) if isinstance(v, tuple) else v) for k, v in m.items()},
      'batch_size': config.train.batch_size,
      'seq_len': config.data.seq_len,
      'sample_rate': config.data.sample_rate,
      'flops': {
        'train_per_sample': flops_lib.train_flops_per_sample(m),
        'generate_per_sample': flops_lib.generate_flops_per_sample(m),
      },
      # Config-specific reasons only; a missing reference is said once, in 'reference'.
      'reference_skipped': why_not if prism is not None else None,
    }
    if 'train' in parts:
      logging.info('-- training')
      entry['train'] = bench_train(sides, suite, config_prism)
    if 'generate' in parts:
      logging.info('-- generation')
      entry['generate'] = bench_generate(
        configs, suite, config_prism, os.path.join(profile_dir, name) if profile_dir else None
      )
    if 'pipeline' in parts:  # The input pipeline has no matmuls: measured once.
      logging.info('-- input pipeline')
      entry['pipeline'] = bench_pipeline(config, suite, config_prism, data_dir)
    if 'scaling' in parts:
      logging.info('-- data-parallel scaling (compiled program, 1 to 8 devices, %s)', dtypes[0])
      entry['scaling'] = {
        form: scaling_lib.with_modeled_times(
          scaling_lib.run_in_subprocess(sides[(form, dtypes[0])], (1, 2, 4, 8)),
          scaling_lib.DEFAULT_GPU,
        )
        for form in forms
      }
    results['configs'][name] = entry
  if prism is not None:
    prism.close()
  results['machine']['load_average_1m_end'] = os.getloadavg()[0]
  # The peaks again at the end: the better of the two is nearer the machine's true peak.
  for dtype, peak_end in _measure_peaks(peak_dtypes, suite).items():
    results.setdefault('matmul_peaks_end', {})[dtype] = peak_end
    if peak_end['flops_per_sec'] > peaks[dtype]['flops_per_sec']:
      peaks[dtype] = peak_end
  results['matmul_peak_end'] = results['matmul_peaks_end']['float32']
  results['matmul_peak'] = peaks['float32']
  for entry in results['configs'].values():
    _peak_shares(entry, {k: v['flops_per_sec'] for k, v in peaks.items()}, dtypes[0])
  results['ratio_higher_is_better'] = {
    'samples_per_sec': True,
    'samples_per_sec_per_sequence': True,
    'samples_per_sec_total': True,
    'achieved_flops_per_sec': True,
    'executed_flops_per_sec': True,
    'fraction_of_peak': True,
    'sec_per_step': False,
    'compile_sec': False,
    'first_call_sec': False,
    'x_real_time': True,
  }
  return results


def _measure_peaks(dtypes: Sequence[str], suite: Dict[str, Any]) -> Dict[str, Dict[str, float]]:
  peaks = {}
  for dtype in dtypes:
    logging.info('Measuring the %s matmul peak (%d^2).', dtype, suite['peak_size'])
    peaks[dtype] = machine.matmul_peak_flops(
      suite['peak_size'], suite['peak_repeats'], model_lib.DTYPES[dtype]
    )
  return peaks


def _peak_shares(entry: Dict[str, Any], peaks: Dict[str, float], first_dtype: str) -> None:
  """Sets ``fraction_of_peak`` (executed FLOP/s over the matmul peak of the side's dtype;
  PRiSM's is float32) and the ratios ours / PRiSM of every side in a config's results
  (``ratio_by_dtype``: the first form's; ``ratio_by_form``; ``ratio``: ``first_dtype``'s)."""
  parts = [entry.get('train')] + [
    v for k, v in entry.get('generate', {}).items() if k.startswith('batch_')
  ]
  for part in filter(None, parts):
    ref = part.get('reference')
    if ref is not None and 'executed_flops_per_sec' in ref:
      ref['fraction_of_peak'] = ref['executed_flops_per_sec'] / peaks['float32']
    # ours_by_dtype holds the first form's figures: the same dicts, until read back from JSON.
    for by_dtype in [part.get('ours_by_dtype', {})] + list(part.get('ours_by_form', {}).values()):
      for dtype, ours in by_dtype.items():
        if 'executed_flops_per_sec' in ours:
          ours['fraction_of_peak'] = ours['executed_flops_per_sec'] / peaks[dtype]
    if ref is not None:
      part['ratio_by_dtype'] = {
        dtype: _ratios(_numbers(ours), _numbers(ref))
        for dtype, ours in part['ours_by_dtype'].items()
      }
      part['ratio'] = part['ratio_by_dtype'][first_dtype]
      if 'ours_by_form' in part:
        part['ratio_by_form'] = {
          form: {dtype: _ratios(_numbers(ours), _numbers(ref)) for dtype, ours in d.items()}
          for form, d in part['ours_by_form'].items()
        }


def _fmt(x, unit: str = '') -> str:
  if x is None:
    return '–'
  if isinstance(x, str):
    return x
  if unit == '%':
    return f'{100 * x:.3g} %'
  for scale, prefix in ((1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
    if abs(x) >= scale and unit != 's':
      return f'{x / scale:.3g} {prefix}{unit}'.rstrip()
  return f'{x:.3g} {unit}'.rstrip()


def _machine_line(results: Dict[str, Any]) -> str:
  """The machine, its bfloat16 matmul support (AMX on a CPU, or the GPU) and the peaks."""
  mi = results['machine']
  if mi['jax_backend'] == 'gpu':
    accelerator = f"GPU: {mi.get('gpu_name') or mi['jax_device_kind']}"
  else:
    accelerator = (
      f"AMX-BF16: {'yes' if mi.get('amx_bf16') else 'no'}, "
      f"AVX512-BF16: {'yes' if mi.get('avx512_bf16') else 'no'}"
    )
  peaks = results.get('matmul_peaks') or {results['dtype']: results['matmul_peak']}
  peak_text = ', '.join(
    f"{dtype} {_fmt(p['flops_per_sec'], 'FLOP/s')}" for dtype, p in peaks.items()
  )
  return (
    f"Machine: {mi['cpu_model']}, {mi['cpu_cores']} cores, {accelerator}; JAX {mi['jax']} "
    f"({mi['jax_backend']}: {mi['jax_device_kind']}), flax {mi['flax']}; matmul peak "
    f"{peak_text} ({next(iter(peaks.values()))['size']}^2)."
  )


def _reference_line(ref: Dict[str, Any], mi: Dict[str, Any]) -> str:
  """PRiSM's commit, the TensorFlow build it ran on (older results lack the build) and where."""
  device = ref.get('tensorflow_device', 'CPU')
  build = ''
  if 'tensorflow_distribution' in ref:
    kind = 'CUDA' if ref.get('tensorflow_cuda_build') else 'CPU-only'
    build = f" ({ref['tensorflow_distribution']}, {kind} build)"
  line = (
    f"PRiSM {str(ref.get('prism_commit'))[:7]}, TensorFlow {ref.get('tensorflow')}"
    f"{build} on the {device}, float32"
  )
  if mi['jax_backend'] != 'cpu' and device == 'CPU':
    line += (
      " (the ratios compare this device with PRiSM on the CPU; install "
      "`tensorflow[and-cuda]` of the same version to compare like with like)"
    )
  return line


def markdown(results: Dict[str, Any]) -> str:
  """The results as a markdown table, with the machine and the peaks in a header.

  With several dtypes each of this project's figures has a row per dtype, against the same
  PRiSM (float32) figure; with several RNN forms each train figure has a row per form and
  dtype. Every form's train step has a row with its depth and FLOPs.
  """
  mi = results['machine']
  ref = results['reference']
  dtypes = results.get('dtypes') or [results['dtype']]
  forms = results.get('rnn_forms') or []
  lines = [
    f"SampleRNN benchmarks, suite `{results['suite']}`, dtype {', '.join(dtypes)}, "
    + (f"RNN form {', '.join(forms)}, " if forms else '')
    + f"{mi['date']}",
    '',
    _machine_line(results)
    + ' Reference: '
    + (_reference_line(ref, mi) if 'prism_dir' in ref else ref['note']),
    '',
    '| ' + ' | '.join(TABLE_HEADER) + ' |',
    '|' + '---|' * len(TABLE_HEADER),
  ]

  def row(config, figure, part, key, unit='', *, lower_better=False):
    if part is None:
      return
    ref_v = part.get('reference', {}).get(key)
    if 'ours_by_form' in part and len(forms) > 1:
      sides = [
        (
          ', '.join(d for d in (dtype if len(dtypes) > 1 else None, form) if d),
          part['ours_by_form'][form][dtype],
          (part.get('ratio_by_form') or {}).get(form, {}).get(dtype),
        )
        for form in forms
        for dtype in dtypes
      ]
    elif 'ours_by_dtype' in part:
      sides = [
        (
          d if len(dtypes) > 1 else None,
          part['ours_by_dtype'][d],
          (part.get('ratio_by_dtype') or {}).get(d),
        )
        for d in dtypes
      ]
    else:  # The input pipeline: no matmuls, one figure.
      sides = [(None, part['ours'], part.get('ratio'))]
    for side, ours, ratios in sides:
      ratio = (ratios or {}).get(key)
      ratio_s = (
        '–' if ratio is None else f"{ratio:.3g}{' (lower is better)' if lower_better else ''}"
      )
      name = f'{figure} [{side}]' if side else figure
      lines.append(
        f'| {config} | {name} | {_fmt(ours.get(key), unit)} | {_fmt(ref_v, unit)} | {ratio_s} |'
      )

  for name, c in results['configs'].items():
    label = (
      f"{name} ({len(c['model']['frame_sizes']) + 1}-tier, dim {c['model']['dim']}, "
      f"B{c['batch_size']}x{c['seq_len']})"
    )
    t = c.get('train')
    row(label, 'train samples/s', t, 'samples_per_sec')
    row(label, 'train s/step', t, 'sec_per_step', 's', lower_better=True)
    row(label, 'train compile s', t, 'compile_sec', 's', lower_better=True)
    row(label, 'train FLOP/s (model count)', t, 'achieved_flops_per_sec', 'FLOP/s')
    row(label, 'train FLOP/s (executed)', t, 'executed_flops_per_sec', 'FLOP/s')
    row(label, 'train executed share of matmul peak', t, 'fraction_of_peak', '%')
    g = c.get('generate', {})
    for key in sorted(k for k in g if k.startswith('batch_')):
      b = key.split('_')[1]
      row(label, f'generate {b} seq: samples/s per seq', g[key], 'samples_per_sec_per_sequence')
      row(label, f'generate {b} seq: samples/s total', g[key], 'samples_per_sec_total')
      row(label, f'generate {b} seq: x real time', g[key], 'x_real_time')
      row(
        label, f'generate {b} seq: FLOP/s (model count)', g[key], 'achieved_flops_per_sec', 'FLOP/s'
      )
      row(
        label, f'generate {b} seq: executed share of matmul peak', g[key], 'fraction_of_peak', '%'
      )
    row(label, 'input pipeline samples/s', c.get('pipeline'), 'samples_per_sec')
    f = c['flops']
    lines.append(
      f"| {label} | model FLOPs/sample train, generate | "
      f"{_fmt(f['train_per_sample'])}, {_fmt(f['generate_per_sample'])} | same | – |"
    )
    for form, p in (t or {}).get('program_by_form', {}).items():
      lines.append(
        f"| {label} | train step [{form}]: depth, executed FLOPs/step | "
        f"{p['depth']} dependent loop iterations, {_fmt(p['flops_per_step_compiled'])} "
        f"(formula x{p['compiled_over_formula']:.3f}) | – | – |"
      )
    if c.get('reference_skipped'):
      lines.append(f"| {label} | reference | – | not run: {c['reference_skipped']} | – |")
  lines += [
    '',
    'Ratios are ours / PRiSM: above 1 is better for throughput and for x real time '
    '(audio seconds per wall second of one sequence); times are lower-is-better.',
  ]
  for name, c in results['configs'].items():
    for form, result in (c.get('scaling') or {}).items():
      lines += ['', scaling_lib.markdown(result, f'Data-parallel scaling, {name}')]
  return '\n'.join(lines) + '\n'


def write(results: Dict[str, Any], out: str) -> None:
  prefix = out[:-5] if out.endswith('.json') else out
  os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
  with open(prefix + '.json', 'w') as f:
    json.dump(results, f, indent=1, sort_keys=True, default=str)
  with open(prefix + '.md', 'w') as f:
    f.write(markdown(results))
  logging.info('Wrote %s.json and %s.md', prefix, prefix)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  unknown = set(_PARTS.value) - set(_PART_NAMES)
  if unknown:
    raise app.UsageError(f'--parts: unknown {sorted(unknown)}; use {", ".join(_PART_NAMES)}.')
  bad = [d for d in _DTYPE.value if d not in model_lib.DTYPES]
  if bad or not _DTYPE.value or len(set(_DTYPE.value)) < len(_DTYPE.value):
    raise app.UsageError(
      f'--dtype={",".join(_DTYPE.value)}: give each of {", ".join(model_lib.DTYPES)} at most once.'
    )
  forms = _RNN_FORM.value
  if not forms or any(f not in rnn_lib.RNN_FORMS for f in forms) or len(set(forms)) < len(forms):
    raise app.UsageError(
      f'--rnn_form={",".join(forms)}: give each of {", ".join(rnn_lib.RNN_FORMS)} at most once.'
    )
  results = run_suite(
    _SUITE.value,
    _CONFIGS.value,
    _PRISM_DIR.value,
    _DTYPE.value,
    _PROFILE_DIR.value,
    _ROUNDS.value,
    _DATA_DIR.value,
    _PARTS.value,
    forms,
  )
  if _OUT.value:
    write(results, _OUT.value)
  print(markdown(results), flush=True)


if __name__ == '__main__':
  app.run(main)
