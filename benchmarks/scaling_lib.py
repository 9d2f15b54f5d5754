r"""Data-parallel scaling of the compiled train step, told in FLOPs and in modeled GPU time.

The library behind ``python -m benchmarks.scaling`` and ``benchmarks.run --parts=scaling``.
For a device count ``N`` the step of ``samplernn_jax.steps.make_train_step`` is lowered and
compiled on a mesh of ``N`` devices (abstract inputs: nothing is allocated or run) and read
(``benchmarks.hlo``):

* ``depth``: the dependent loop iterations of one device's program (XLA:CPU's row loop of the
  table lookup left out: a GPU program has none). It does not shrink with ``N``;
* ``flops_per_device``: its matmul FLOPs, loop bodies counted as often as they run (XLA's cost
  analysis counts a loop body once: ``benchmarks/PERF.md``, "Depth");
* ``efficiency``: ``flops(1) / (N * flops(N))``, 100% when every device does 1/N of the work;
* per collective kind (all-reduce, all-gather, reduce-scatter, all-to-all, collective-permute):
  how many, the bytes of their results (``payload_bytes``), the bytes a ring algorithm sends
  per device (``ring_bytes_per_device``), and how many sit inside a loop (run every iteration).

``with_modeled_times`` turns them into a GPU step time, ``depth x iteration latency + FLOPs /
achievable matmul rate + ring bytes / link bandwidth``, with the parameters of ``GPUS`` and
``MODEL`` (each with its source, or said to be an assumption), and the time efficiency
``time(1) / (N * time(N))`` that follows. A model, not a measurement: ``scripts/gpu_check.sh``
measures the step on a GPU.

On a CPU the devices are forced (``--xla_force_host_platform_device_count``): the compiles run
in a subprocess with that flag (``run_in_subprocess``). What is read is the program each device
would run on any backend (but XLA:CPU's row loop, left out of the depth).
"""

import json
import math
import os
import re
import subprocess
import sys
from typing import Any, Dict, Sequence

from benchmarks import hlo
from benchmarks import named_configs

COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all', 'collective-permute')
# `%name = SHAPE op(`, SHAPE possibly a tuple; async pairs count once, at their -start.
_INSTRUCTION = re.compile(
  r'^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.+?)\s+(' + '|'.join(COLLECTIVES) + r')(-start)?\('
)

# The GPUs the time model knows: dense tensor-core peaks (the datasheets print TF32 and BF16
# "with sparsity", twice the dense figure) and NVLink bandwidth. float32 matmuls run as TF32
# at JAX's default matmul precision on these GPUs.
GPUS = {
  'H100': {
    'name': 'NVIDIA H100 SXM5',
    'matmul_flops_per_sec': {'float32': 494.5e12, 'bfloat16': 989.5e12},
    'link_bytes_per_sec': 450e9,
    'source': 'NVIDIA H100 Tensor Core GPU datasheet (SXM5): TF32 989 and BF16 1,979 '
    'TFLOPS with sparsity, half that dense; NVLink 900 GB/s, both directions '
    'together (450 GB/s sent per GPU)',
  },
  'H200': {
    'name': 'NVIDIA H200 SXM',
    'matmul_flops_per_sec': {'float32': 494.5e12, 'bfloat16': 989.5e12},
    'link_bytes_per_sec': 450e9,
    'source': 'NVIDIA H200 Tensor Core GPU datasheet (SXM): TF32 989 and BF16 1,979 '
    'TFLOPS with sparsity, half that dense; NVLink 900 GB/s, both directions '
    'together (450 GB/s sent per GPU). Its larger, faster memory (141 GB, '
    '4.8 TB/s) is not a term of this model',
  },
}
DEFAULT_GPU = 'H200'

MODEL = {
  'iteration_sec': {
    'value': 6e-6,
    'source': 'assumption: one scan iteration is 2-3 dependent kernels (a matmul, the fused '
    'gate math, the slice update of the outputs); NVIDIA measured 3.4-3.8 us per '
    'short dependent kernel (2.9 us of it the kernel itself) launched back to '
    'back or from a CUDA graph (V100; "Getting Started with CUDA Graphs", NVIDIA '
    'Technical Blog, 2019). XLA:GPU runs a loop of known trip count without '
    'reading its predicate back (while_thunk.cc). scripts/gpu_check.sh measures '
    'the step',
  },
  'matmul_fraction': {
    'value': 0.6,
    'source': "assumption: the share of the dense peak the step's matmuls reach; large "
    'cuBLAS GEMMs reach more (70-80%), but the step also multiplies [rows, D] '
    'blocks inside its loops and does elementwise work',
  },
  'link_fraction': {
    'value': 0.8,
    'source': 'assumption: the share of the NVLink bandwidth a ring collective of '
    'hundreds of MB reaches',
  },
}


def collectives(hlo_text: str, num_devices: int) -> Dict[str, Dict[str, Any]]:
  """Per collective kind: count, payload bytes, ring bytes per device, count inside loops."""
  in_loop = hlo.loop_computations(hlo_text)
  out = {
    k: {'count': 0, 'payload_bytes': 0, 'ring_bytes_per_device': 0.0, 'in_loop': 0, 'shapes': []}
    for k in COLLECTIVES
  }
  n = max(num_devices, 1)
  for current, line in hlo.instructions(hlo_text):
    m = _INSTRUCTION.match(line)
    if not m:
      continue
    shape, kind = m.group(1), m.group(2)
    if m.group(3):  # An async start returns (operands, results, ...): count the results.
      parts = hlo.SHAPE.findall(shape)
      shape = ' '.join(f'{d}[{s}]' for d, s in parts[len(parts) // 2 :])
    size = hlo.shape_bytes(shape)
    entry = out[kind]
    entry['count'] += 1
    entry['payload_bytes'] += size
    entry['shapes'].append(shape.strip())
    # Ring algorithms: an all-reduce sends 2(N-1)/N of its buffer per device, an all-gather
    # (N-1)/N of its result, a reduce-scatter (N-1) times its (1/N-sized) result.
    factor = {
      'all-reduce': 2 * (n - 1) / n,
      'all-gather': (n - 1) / n,
      'reduce-scatter': float(n - 1),
      'all-to-all': (n - 1) / n,
      'collective-permute': 1.0,
    }[kind]
    entry['ring_bytes_per_device'] += factor * size
    entry['in_loop'] += int(current in in_loop)
  return out


def compile_train_step(config, devices):
  """The train step compiled on a mesh over ``devices``, from abstract (unallocated) inputs."""
  return lower_train_step(config, devices).compile()


def lower_train_step(config, devices):
  """The train step lowered (not compiled) on a mesh over ``devices``, from abstract inputs."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from samplernn_jax import steps  # pylint: disable=g-import-not-at-top
  from samplernn_jax import train_state  # pylint: disable=g-import-not-at-top

  mesh = steps.make_mesh(devices)
  rep, dat = steps.replicated(mesh), steps.data_sharded(mesh)
  state = jax.eval_shape(lambda: train_state.create_train_state(config, jax.random.key(0)))
  carry = jax.eval_shape(steps.make_init_carry(config, mesh), state.params)

  def placed(tree, sharding):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)

  batch_size = int(config.train.batch_size)
  length = int(config.data.seq_len) + int(config.model.frame_sizes[-1])
  batch = {
    'x': jax.ShapeDtypeStruct((batch_size, length), np.int32, sharding=dat),
    'reset': jax.ShapeDtypeStruct((batch_size,), np.bool_, sharding=dat),
  }
  step = steps.make_train_step(config, mesh)
  return step.lower(placed(state, rep), placed(carry, dat), batch)


def program_figures(compiled, num_devices: int) -> Dict[str, Any]:
  """Depth, per-device matmul FLOPs (``train_step.program_figures``) and the collectives."""
  from benchmarks import train_step  # pylint: disable=g-import-not-at-top

  text = compiled.as_text()
  figures = train_step.program_figures(text)
  return {
    'depth': figures['depth'],
    'loops': figures['loops'],
    'flops_per_device': figures['flops_per_step_compiled'],
    'collectives': collectives(text, num_devices),
  }


def measure(config, device_counts: Sequence[int] = (1, 2, 4, 8)) -> Dict[str, Any]:
  """``program_figures`` per device count, with each count's FLOP efficiency against 1, and
  ``flops_per_row``: the step's FLOPs per row of windows (``benchmarks/flops.py``, executed,
  without the weight folds, which do not grow with the batch)."""
  import jax  # pylint: disable=g-import-not-at-top

  from benchmarks import flops as flops_lib  # pylint: disable=g-import-not-at-top

  rows = {}
  for n in device_counts:
    rows[n] = program_figures(compile_train_step(config, jax.devices()[:n]), n)
  base_n = min(device_counts)
  base = rows[base_n]
  for n, row in rows.items():
    row['ideal_flops_per_device'] = base['flops_per_device'] * base_n / n
    row['efficiency'] = row['ideal_flops_per_device'] / row['flops_per_device']
  batch_size, seq_len = int(config.train.batch_size), int(config.data.seq_len)
  from samplernn_jax import backend  # pylint: disable=g-import-not-at-top

  form = backend.rnn_form(str(config.model.rnn_form))  # 'auto': what this backend compiled.
  per_step = [
    flops_lib.train_flops_per_step(config.model, b, seq_len, form='implemented', rnn_form=form)
    for b in (0, batch_size)
  ]
  return {
    'batch_size': batch_size,
    'seq_len': seq_len,
    'dtype': str(config.model.get('dtype', 'float32')),
    'rnn_form': form,
    'flops_per_row': (per_step[1] - per_step[0]) / batch_size,
    'devices': {str(n): r for n, r in rows.items()},
  }


def with_modeled_times(result: Dict[str, Any], gpu: str = DEFAULT_GPU) -> Dict[str, Any]:
  """``result`` (of ``measure``) with a modeled step time per device count on ``gpu``.

  Per device count: ``modeled`` = ``depth_sec`` (depth x iteration latency), ``flop_sec``
  (FLOPs per device / achievable matmul rate in the step's dtype), ``link_sec`` (ring bytes
  sent per device / achievable link bandwidth) and their sum ``step_sec``; and
  ``time_efficiency`` = ``step_sec(1) / (N * step_sec(N))``. Also
  ``rows_per_device_for_flop_term_at_least_depth_term``: how many rows of windows each device
  needs for its FLOP term to reach its depth term (``depth x latency x rate / flops_per_row``).
  """
  spec = GPUS[gpu]
  rate = spec['matmul_flops_per_sec'][result['dtype']] * MODEL['matmul_fraction']['value']
  link = spec['link_bytes_per_sec'] * MODEL['link_fraction']['value']
  latency = MODEL['iteration_sec']['value']
  rows = result['devices']
  for row in rows.values():
    ring = sum(c['ring_bytes_per_device'] for c in row['collectives'].values())
    modeled = {
      'depth_sec': row['depth'] * latency,
      'flop_sec': row['flops_per_device'] / rate,
      'link_sec': ring / link,
    }
    modeled['step_sec'] = sum(modeled.values())
    row['modeled'] = modeled
  base_n = min(int(n) for n in rows)
  base = rows[str(base_n)]
  for n, row in rows.items():
    row['time_efficiency'] = (
      base['modeled']['step_sec'] * base_n / (int(n) * row['modeled']['step_sec'])
    )
  result['rows_per_device_for_flop_term_at_least_depth_term'] = math.ceil(
    base['depth'] * latency * rate / result['flops_per_row']
  )
  result['modeled_gpu'] = gpu
  return result


def parameters_markdown(dtype: str) -> str:
  """The time model's parameters for every GPU it knows, each with its source."""
  names = list(GPUS)
  lines = [
    f"| parameter | {' | '.join(names)} | source |",
    '| --- |' + ' --- |' * len(names) + ' --- |',
  ]

  def row(label, values, source):
    lines.append(f"| {label} | {' | '.join(values)} | {source} |")

  unit = 'TF32' if dtype == 'float32' else 'BF16'
  row(
    f'dense {unit} tensor-core FLOP/s ({dtype} matmuls)',
    [f"{GPUS[g]['matmul_flops_per_sec'][dtype] / 1e12:.1f} T" for g in names],
    'datasheets, below',
  )
  row(
    'NVLink bandwidth sent per GPU',
    [f"{GPUS[g]['link_bytes_per_sec'] / 1e9:.0f} GB/s" for g in names],
    'datasheets, below',
  )
  for key, label, fmt in (
    ('iteration_sec', 'latency of one scan iteration', lambda v: f'{v * 1e6:.0f} us'),
    ('matmul_fraction', 'achieved share of the matmul peak', lambda v: f'{v:.0%}'),
    ('link_fraction', 'achieved share of the link bandwidth', lambda v: f'{v:.0%}'),
  ):
    row(label, [fmt(MODEL[key]['value'])] * len(names), MODEL[key]['source'])
  lines.append('')
  lines += [f"* {GPUS[g]['name']}: {GPUS[g]['source']}." for g in names]
  return '\n'.join(lines) + '\n'


def markdown(result: Dict[str, Any], title: str) -> str:
  """A table: per device count the depth, per-device FLOPs, FLOP efficiency, the bytes of each
  collective kind per step and, after ``with_modeled_times``, the modeled GPU time and the
  time efficiency."""
  modeled = 'modeled_gpu' in result
  lines = [
    f'### {title}: global batch {result["batch_size"]}, seq_len {result["seq_len"]}, '
    f'{result["dtype"]}, {result.get("rnn_form", "layered")} RNNs',
    '',
  ]
  header = [
    'devices',
    'rows per device',
    'depth',
    'FLOPs per device',
    'ideal (1/N)',
    'FLOP efficiency',
    'all-reduce',
    'all-gather',
    'reduce-scatter',
    'other collectives',
    'ring bytes sent per device',
  ]
  if modeled:
    header += [
      f"modeled {result['modeled_gpu']} ms: depth + FLOPs + link = step",
      'time efficiency',
    ]
  lines += ['| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)]

  def kind(c):
    return f"{c['count']} x, {c['payload_bytes'] / 1e6:.2f} MB" if c['count'] else '–'

  for n, r in result['devices'].items():
    c = r['collectives']
    other = {
      k: v
      for k, v in c.items()
      if k not in ('all-reduce', 'all-gather', 'reduce-scatter') and v['count']
    }
    ring = sum(v['ring_bytes_per_device'] for v in c.values())
    cells = [
      n,
      str(result['batch_size'] // int(n)),
      str(r['depth']),
      f"{r['flops_per_device']:.3e}",
      f"{r['ideal_flops_per_device']:.3e}",
      f"{100 * r['efficiency']:.1f}%",
      kind(c['all-reduce']),
      kind(c['all-gather']),
      kind(c['reduce-scatter']),
      ', '.join(f'{k}: {kind(v)}' for k, v in other.items()) or '–',
      f'{ring / 1e6:.1f} MB',
    ]
    if modeled:
      m = r['modeled']
      cells += [
        f"{1e3 * m['depth_sec']:.2f} + {1e3 * m['flop_sec']:.2f} + "
        f"{1e3 * m['link_sec']:.2f} = {1e3 * m['step_sec']:.2f}",
        f"{100 * r['time_efficiency']:.1f}%",
      ]
    lines.append('| ' + ' | '.join(cells) + ' |')
  if modeled:
    lines += [
      '',
      f"Modeled on the {result['modeled_gpu']}: the FLOP term reaches the depth term "
      f"from {result['rows_per_device_for_flop_term_at_least_depth_term']} rows of "
      'windows per device.',
    ]
  return '\n'.join(lines) + '\n'


def summary_markdown(runs: Sequence[Dict[str, Any]]) -> str:
  """One row per (global batch, RNN form): depth, and FLOP and modeled time efficiency per
  device count."""
  counts = list(runs[0]['devices'])
  head = ['global batch', 'RNN form', 'depth'] + [
    f'{n} dev: FLOP / time eff., step ms' for n in counts
  ]
  lines = ['| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
  for r in runs:
    cells = [str(r['batch_size']), r['rnn_form'], str(r['devices'][counts[0]]['depth'])]
    for n in counts:
      d = r['devices'][n]
      cells.append(
        f"{100 * d['efficiency']:.1f}% / {100 * d['time_efficiency']:.1f}%, "
        f"{1e3 * d['modeled']['step_sec']:.1f}"
      )
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def run_in_subprocess(config, device_counts: Sequence[int]) -> Dict[str, Any]:
  """``measure`` in a fresh process with ``max(device_counts)`` forced host devices."""
  env = dict(os.environ)
  env['XLA_FLAGS'] = (
    env.get('XLA_FLAGS', '') + f' --xla_force_host_platform_device_count={max(device_counts)}'
  ).strip()
  env['JAX_PLATFORMS'] = 'cpu'
  code = (
    'import json, sys, ml_collections; from benchmarks import scaling_lib; '
    'c = ml_collections.ConfigDict(json.loads(sys.stdin.read())); '
    f'print("RESULT " + json.dumps(scaling_lib.measure(c, {list(device_counts)})))'
  )
  proc = subprocess.run(
    [sys.executable, '-c', code],
    input=config.to_json(),
    env=env,
    capture_output=True,
    text=True,
    check=False,
    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
  )
  for line in proc.stdout.splitlines():
    if line.startswith('RESULT '):
      return json.loads(line[len('RESULT ') :])
  raise RuntimeError(f'scaling subprocess failed ({proc.returncode}):\n{proc.stderr[-3000:]}')


def config_for(name: str, batch_size=None, seq_len=None, dim=None, dtype='float32', rnn_form=None):
  """``configs/NAME.py`` with the given fields replaced (None keeps the config's), validated."""
  from samplernn_jax import config as config_lib  # pylint: disable=g-import-not-at-top

  config = named_configs.load_config(name)
  if batch_size:
    config.train.batch_size = batch_size
  if seq_len:
    config.data.seq_len = seq_len
  if dim:
    config.model.dim = dim
  config.model.dtype = dtype
  if rnn_form:
    config.model.rnn_form = rnn_form
  return config_lib.validate(config)
