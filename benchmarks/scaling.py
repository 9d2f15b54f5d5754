r"""Data-parallel scaling read from the compiled train step: per-device FLOPs and collectives.

    python -m benchmarks.scaling [--config=default] [--batch_size=64] [--seq_len=1024] \
        [--devices=1,2,4,8] [--dtype=float32] [--out=benchmarks/results/scaling_default]

For each device count ``N`` the step of ``samplernn_jax.steps.make_train_step`` is lowered and
compiled on a mesh of ``N`` devices (abstract inputs: nothing is allocated or run) and read:

* ``flops_per_device``: XLA's cost analysis of the partitioned program, i.e. one device's work;
* ``efficiency``: ``flops(1) / (N * flops(N))``, 100% when every device does 1/N of the work;
* per collective kind (all-reduce, all-gather, reduce-scatter, all-to-all, collective-permute):
  how many, the bytes of their results (``payload_bytes``), the bytes a ring algorithm sends
  per device (``ring_bytes_per_device``), and how many sit inside a loop (run every iteration).

On a CPU the devices are forced (``--xla_force_host_platform_device_count``); this module
re-runs itself in a subprocess with that flag when fewer devices are visible. What is read is
the program each device would run on any backend; the seconds it takes are not measured here.
"""

import collections
import json
import os
import re
import subprocess
import sys
from typing import Any, Dict, Sequence


COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all', 'collective-permute')
_BYTES = {'pred': 1, 's8': 1, 'u8': 1, 's16': 2, 'u16': 2, 'f16': 2, 'bf16': 2, 's32': 4,
          'u32': 4, 'f32': 4, 's64': 8, 'u64': 8, 'f64': 8}
_SHAPE = re.compile(r'\b(pred|[suf]\d+|bf16)\[([\d,]*)\]')
# `%name = SHAPE op(`, SHAPE possibly a tuple; async pairs count once, at their -start.
_INSTRUCTION = re.compile(r'^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.+?)\s+(' +
                          '|'.join(COLLECTIVES) + r')(-start)?\(')
_COMPUTATION = re.compile(r'^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$')
_CALLS = re.compile(r'(?:body|condition|to_apply|calls|branch_computations)=\{?%?([\w.\-, %]+)\}?')


def shape_bytes(shape_text: str) -> int:
  """Bytes of every array in an HLO shape (an array or a tuple of arrays)."""
  total = 0
  for dtype, dims in _SHAPE.findall(shape_text):
    n = 1
    for d in filter(None, dims.split(',')):
      n *= int(d)
    total += n * _BYTES.get(dtype, 4)
  return total


def _instructions(hlo: str):
  """``(computation name, line)`` for every instruction line of an HLO module's text."""
  current = None
  for line in hlo.splitlines():
    m = _COMPUTATION.match(line)
    if m and not line.startswith(' '):
      current = m.group(1)
    elif current is not None:
      yield current, line


def _loop_computations(hlo: str) -> set:
  """Names of the computations that run inside a while loop (bodies and what they call)."""
  calls = collections.defaultdict(set)
  bodies = set()
  for current, line in _instructions(hlo):
    for names in _CALLS.findall(line):
      for name in re.split(r'[,\s%]+', names):
        if name:
          calls[current].add(name)
    body = re.search(r'\bbody=%?([\w.\-]+)', line)
    if body:
      bodies.add(body.group(1))
  inside, todo = set(), list(bodies)
  while todo:
    name = todo.pop()
    if name not in inside:
      inside.add(name)
      todo.extend(calls[name])
  return inside


def collectives(hlo: str, num_devices: int) -> Dict[str, Dict[str, Any]]:
  """Per collective kind: count, payload bytes, ring bytes per device, count inside loops."""
  in_loop = _loop_computations(hlo)
  out = {k: {'count': 0, 'payload_bytes': 0, 'ring_bytes_per_device': 0.0, 'in_loop': 0,
             'shapes': []} for k in COLLECTIVES}
  n = max(num_devices, 1)
  for current, line in _instructions(hlo):
    m = _INSTRUCTION.match(line)
    if not m:
      continue
    shape, kind = m.group(1), m.group(2)
    if m.group(3):  # An async start returns (operands, results, ...): count the results.
      parts = _SHAPE.findall(shape)
      shape = ' '.join(f'{d}[{s}]' for d, s in parts[len(parts) // 2:])
    size = shape_bytes(shape)
    entry = out[kind]
    entry['count'] += 1
    entry['payload_bytes'] += size
    entry['shapes'].append(shape.strip())
    # Ring algorithms: an all-reduce sends 2(N-1)/N of its buffer per device, an all-gather
    # (N-1)/N of its result, a reduce-scatter (N-1) times its (1/N-sized) result.
    factor = {'all-reduce': 2 * (n - 1) / n, 'all-gather': (n - 1) / n,
              'reduce-scatter': float(n - 1), 'all-to-all': (n - 1) / n,
              'collective-permute': 1.0}[kind]
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
  batch = {'x': jax.ShapeDtypeStruct((batch_size, length), np.int32, sharding=dat),
           'reset': jax.ShapeDtypeStruct((batch_size,), np.bool_, sharding=dat)}
  step = steps.make_train_step(config, mesh)
  return step.lower(placed(state, rep), placed(carry, dat), batch)


def program_figures(compiled, num_devices: int) -> Dict[str, Any]:
  """Per-device FLOPs and bytes accessed (XLA's cost analysis) and the collectives."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else (cost or {})
  return {'flops_per_device': float(cost.get('flops', float('nan'))),
          'bytes_accessed_per_device': float(cost.get('bytes accessed', float('nan'))),
          'collectives': collectives(compiled.as_text(), num_devices)}


def measure(config, device_counts: Sequence[int] = (1, 2, 4, 8)) -> Dict[str, Any]:
  """``program_figures`` per device count, with each count's FLOP efficiency against 1."""
  import jax  # pylint: disable=g-import-not-at-top
  rows = {}
  for n in device_counts:
    rows[n] = program_figures(compile_train_step(config, jax.devices()[:n]), n)
  base = rows[min(device_counts)]
  base_n = min(device_counts)
  for n, row in rows.items():
    row['ideal_flops_per_device'] = base['flops_per_device'] * base_n / n
    row['efficiency'] = row['ideal_flops_per_device'] / row['flops_per_device']
  return {'batch_size': int(config.train.batch_size), 'seq_len': int(config.data.seq_len),
          'dtype': str(config.model.get('dtype', 'float32')),
          'devices': {str(n): r for n, r in rows.items()}}


def markdown(result: Dict[str, Any], title: str) -> str:
  """A table: per-device FLOPs, efficiency, and bytes per collective kind per step."""
  lines = [f'### {title}: global batch {result["batch_size"]}, seq_len {result["seq_len"]}, '
           f'{result["dtype"]}', '',
           '| devices | per-device FLOPs | ideal (1/N) | efficiency | all-reduce | all-gather '
           '| reduce-scatter | other collectives | ring bytes sent per device |',
           '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']

  def kind(c):
    return f"{c['count']} x, {c['payload_bytes'] / 1e6:.2f} MB" if c['count'] else '–'
  for n, r in result['devices'].items():
    c = r['collectives']
    other = {k: v for k, v in c.items()
             if k not in ('all-reduce', 'all-gather', 'reduce-scatter') and v['count']}
    ring = sum(v['ring_bytes_per_device'] for v in c.values())
    lines.append(f"| {n} | {r['flops_per_device']:.3e} | {r['ideal_flops_per_device']:.3e} | "
                 f"{100 * r['efficiency']:.1f}% | {kind(c['all-reduce'])} | {kind(c['all-gather'])} | "
                 f"{kind(c['reduce-scatter'])} | "
                 f"{', '.join(f'{k}: {kind(v)}' for k, v in other.items()) or '–'} | "
                 f"{ring / 1e6:.1f} MB |")
  return '\n'.join(lines) + '\n'


def run_in_subprocess(config, device_counts: Sequence[int]) -> Dict[str, Any]:
  """``measure`` in a fresh process with ``max(device_counts)`` forced host devices."""
  env = dict(os.environ)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count='
                      f'{max(device_counts)}').strip()
  env['JAX_PLATFORMS'] = 'cpu'
  code = ('import json, sys, ml_collections; from benchmarks import scaling; '
          'c = ml_collections.ConfigDict(json.loads(sys.stdin.read())); '
          f'print("RESULT " + json.dumps(scaling.measure(c, {list(device_counts)})))')
  proc = subprocess.run([sys.executable, '-c', code], input=config.to_json(), env=env,
                        capture_output=True, text=True, check=False,
                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  for line in proc.stdout.splitlines():
    if line.startswith('RESULT '):
      return json.loads(line[len('RESULT '):])
  raise RuntimeError(f'scaling subprocess failed ({proc.returncode}):\n{proc.stderr[-3000:]}')


def config_for(name: str, batch_size=None, seq_len=None, dim=None, dtype='float32'):
  from benchmarks import run as run_lib  # pylint: disable=g-import-not-at-top
  from samplernn_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  config = run_lib.load_config(name)
  if batch_size:
    config.train.batch_size = batch_size
  if seq_len:
    config.data.seq_len = seq_len
  if dim:
    config.model.dim = dim
  config.model.dtype = dtype
  return config_lib.validate(config)


def main(argv=None):
  import argparse  # pylint: disable=g-import-not-at-top
  from benchmarks import machine  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--config', default='default', help='A configs/ module: default, small, ...')
  parser.add_argument('--batch_size', type=int, help="Global batch (default: the config's).")
  parser.add_argument('--seq_len', type=int, help="Window length (default: the config's).")
  parser.add_argument('--dim', type=int, help="Model width (default: the config's).")
  parser.add_argument('--devices', default='1,2,4,8', help='Device counts to compile for.')
  parser.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'])
  parser.add_argument('--out', help='Path prefix: writes OUT.json and OUT.md.')
  args = parser.parse_args(argv)
  counts = sorted(int(d) for d in args.devices.split(','))
  config = config_for(args.config, args.batch_size, args.seq_len, args.dim, args.dtype)
  result = run_in_subprocess(config, counts)
  result['config'] = args.config
  result['model'] = {k: (list(v) if isinstance(v, tuple) else v)
                     for k, v in config.model.to_dict().items()}
  result['machine'] = machine.machine_info()
  table = markdown(result, args.config)
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + '.json', 'w') as f:
      json.dump(result, f, indent=1, sort_keys=True, default=str)
    with open(args.out + '.md', 'w') as f:
      f.write(table)
  print(table)


if __name__ == '__main__':
  main()
