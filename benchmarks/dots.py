r"""Every matmul of the train step by operand dtype and size, read from its StableHLO.

    python -m benchmarks.dots [--config=default] [--dtype=bfloat16] [--batch_size=64] \
        [--seq_len=1024] [--all]

The program is the one ``samplernn_jax.steps.make_train_step`` hands to XLA (lowered from
abstract inputs: nothing is allocated, compiled or run), forward and backward. It is read
before XLA's passes on purpose: XLA:CPU without AMX rewrites bfloat16 dots to float32
ones when it compiles (so its compiled text cannot tell a bfloat16 step from a float32
one), while a GPU or an AMX CPU runs them as written. What is read here is what this
project asks for on every backend.

Each ``dot_general``/``convolution`` is counted as often as it runs in one step: inside a
``lax.scan`` once per iteration (the trip count is read from the loop's condition), inside
a function once per call. ``operand_bytes`` are the bytes of both operands per execution.
"""

import collections
import dataclasses
import math
import re
from typing import Dict, List, Optional, Sequence

from absl import app
from absl import flags

_BYTES = {
  'i1': 1,
  'i8': 1,
  'ui8': 1,
  'bf16': 2,
  'f16': 2,
  'i16': 2,
  'f32': 4,
  'i32': 4,
  'ui32': 4,
  'f64': 8,
  'i64': 8,
}
_TENSOR = re.compile(r'tensor<((?:\d+x)*)([a-z]+\d+)>')
_FUNC = re.compile(r'^\s*func\.func (?:public |private )?@([\w$.\-]+)\(')
_CALL = re.compile(r'\bcall @([\w$.\-]+)\(')
_DOT = re.compile(
  r'stablehlo\.(dot_general|dot|convolution)\b(.*):\s*\((tensor<[^>]*>),\s*'
  r'(tensor<[^>]*>)\)\s*->\s*(tensor<[^>]*>)(?:\s*loc\((#loc\d*)\))?'
)
_CONTRACT = re.compile(r'contracting_dims = \[([\d, ]*)\] x')
_TRIP = re.compile(r'stablehlo\.constant dense<(\d+)> : tensor<i(?:32|64)>')
_LOC = re.compile(r'^(#loc\d*) = loc\((.*)\)\s*$', re.M)


@dataclasses.dataclass
class Dot:
  """One matmul of the program: ``executions`` per step, operands ``lhs`` and ``rhs``."""

  kind: str
  lhs_dtype: str
  lhs_shape: tuple
  rhs_dtype: str
  rhs_shape: tuple
  out_dtype: str
  out_shape: tuple
  flops: Optional[float]  # Per execution; None for a convolution.
  executions: int
  where: str

  @property
  def dtypes(self) -> str:
    return f'{self.lhs_dtype} x {self.rhs_dtype} -> {self.out_dtype}'

  @property
  def largest_operand(self) -> int:
    """Elements of the larger operand."""
    return max(math.prod(self.lhs_shape), math.prod(self.rhs_shape))

  @property
  def operand_bytes(self) -> int:
    return math.prod(self.lhs_shape) * _BYTES.get(self.lhs_dtype, 4) + math.prod(
      self.rhs_shape
    ) * _BYTES.get(self.rhs_dtype, 4)


def _tensor(text: str):
  dims, dtype = _TENSOR.fullmatch(text.strip()).groups()
  return dtype, tuple(int(d) for d in dims.split('x') if d)


def _locations(text: str) -> Dict[str, str]:
  """``#locN`` -> the op name it carries (following references to other locations)."""
  raw = dict(_LOC.findall(text))
  names = {}

  def name(ref, depth=0):
    if ref in names or depth > 50:
      return names.get(ref, '')
    body = raw.get(ref, '')
    quoted = re.search(r'"([^"]*)"', body)
    if quoted:
      names[ref] = quoted.group(1)
    else:
      inner = re.search(r'(#loc\d*)', body)
      names[ref] = name(inner.group(1), depth + 1) if inner else ''
    return names[ref]

  for ref in raw:
    name(ref)
  return names


def _short(where: str) -> str:
  """``fwd``/``bwd`` and the module path of an op name, without the jit and transform noise."""
  side = 'bwd' if 'transpose(' in where else 'fwd'
  path = re.sub(r'^jit\([^)]*\)/', '', where)
  path = re.sub(r'(transpose\()?(jvp\()?(\w+)\)?\)?/', r'\3/', path, count=1)
  noise = {
    'SampleRNN',
    'SampleRNN.frame_tiers_forward',
    'while',
    'body',
    'closed_call',
    'dot_general',
  }
  return f"{side} {'/'.join(p for p in path.split('/') if p not in noise)}"


def parse(stablehlo: str) -> List[Dot]:
  """Every dot and convolution of a module's text, with its executions per call of ``main``.

  ``stablehlo`` is ``jax.jit(f).lower(...).as_text(debug_info=True)`` (without debug info
  the ``where`` fields are empty).
  """
  locations = _locations(stablehlo)
  calls = collections.defaultdict(list)  # Caller -> [(callee, times per caller run)].
  found = collections.defaultdict(list)  # Function -> [(dot fields, times per run)].
  call_site = {}  # Callee -> the op name of its first call (a scan body's names are short).
  func, loops, awaiting_trip = None, [], None
  for line in stablehlo.splitlines():
    indent = len(line) - len(line.lstrip())
    if loops and indent == loops[-1][0] and line.lstrip().startswith('}') and 'do {' not in line:
      loops.pop()  # The end of the loop's body (its regions are at the loop's indentation).
      continue
    m = _FUNC.match(line)
    if m:
      func, loops = m.group(1), []
      continue
    if 'stablehlo.while' in line:
      loops.append([indent, 1])
      awaiting_trip = loops[-1]
      continue
    if awaiting_trip is not None:
      trip = _TRIP.search(line)
      if trip:
        awaiting_trip[1] = int(trip.group(1))
        awaiting_trip = None
      elif 'do {' in line:
        awaiting_trip = None
    times = math.prod(t for _, t in loops)
    for callee in _CALL.findall(line):
      calls[func].append((callee, times))
      loc = re.search(r'loc\((#loc\d*)\)\s*$', line)
      call_site.setdefault(callee, (func, locations.get(loc.group(1), '') if loc else ''))
    m = _DOT.search(line)
    if m:
      found[func].append((m, times))

  runs = collections.Counter({'main': 1})
  order, seen = [], set()

  def visit(f):  # Callers before callees: a topological order of the call graph.
    if f in seen:
      return
    seen.add(f)
    for callee, _ in calls[f]:
      visit(callee)
    order.append(f)

  visit('main')
  for f in reversed(order):
    for callee, times in calls[f]:
      runs[callee] += runs[f] * times

  def where(f, name):  # Prefixed with the call sites' names up to the jitted function's.
    while not name.startswith('jit(') and f in call_site:
      f, site = call_site[f]
      name = f'{site}/{name}' if site else name
    return _short(name) if name else ''

  dots = []
  for f, entries in found.items():
    for m, times in entries:
      kind, attrs, lhs, rhs, out, loc = m.groups()
      (ld, ls), (rd, rs), (od, os_) = _tensor(lhs), _tensor(rhs), _tensor(out)
      flops = None
      if kind != 'convolution':
        contract = _CONTRACT.search(attrs)
        dims = [int(d) for d in contract.group(1).split(',')] if contract else [len(ls) - 1]
        flops = 2.0 * math.prod(os_) * math.prod(ls[d] for d in dims)
      dots.append(
        Dot(
          kind,
          ld,
          ls,
          rd,
          rs,
          od,
          os_,
          flops,
          runs[f] * times,
          where(f, locations.get(loc, '') if loc else ''),
        )
      )
  return dots


def wide(dots: Sequence[Dot], min_elements: int = 0, narrow: str = 'bf16') -> List[Dot]:
  """The dots with an operand not in ``narrow`` whose larger operand has more than
  ``min_elements`` elements."""
  return [
    d
    for d in dots
    if (d.lhs_dtype != narrow or d.rhs_dtype != narrow) and d.largest_operand > min_elements
  ]


def summary(dots: Sequence[Dot]) -> Dict[str, Dict[str, float]]:
  """Per ``lhs x rhs -> out`` dtypes: ops in the program, executions, operand bytes and
  flops per step."""
  out = {}
  for d in dots:
    row = out.setdefault(d.dtypes, {'ops': 0, 'executions': 0, 'operand_bytes': 0.0, 'flops': 0.0})
    row['ops'] += 1
    row['executions'] += d.executions
    row['operand_bytes'] += d.operand_bytes * d.executions
    row['flops'] += (d.flops or 0.0) * d.executions
  return out


def markdown(dots: Sequence[Dot], title: str, *, list_all: bool = False) -> str:
  lines = [
    f'### {title}',
    '',
    '| operands -> result | ops | runs per step | operand bytes per step | FLOPs per step |',
    '| --- | --- | --- | --- | --- |',
  ]
  for dtypes, row in sorted(summary(dots).items()):
    lines.append(
      f"| {dtypes} | {row['ops']} | {row['executions']} | "
      f"{row['operand_bytes'] / 1e6:.1f} MB | {row['flops']:.3e} |"
    )
  shown = dots if list_all else wide(dots)
  if shown:
    lines += ['', '| where | operands | runs | FLOPs per run |', '| --- | --- | --- | --- |']
    for d in sorted(shown, key=lambda d: -(d.flops or 0) * d.executions):
      lines.append(
        f'| {d.where or "?"} | {d.lhs_dtype}{list(d.lhs_shape)} x '
        f'{d.rhs_dtype}{list(d.rhs_shape)} | {d.executions} | '
        f'{(d.flops or 0):.3g} |'
      )
  return '\n'.join(lines) + '\n'


def train_step_dots(config) -> List[Dot]:
  """The dots of ``config``'s train step on one device."""
  import jax  # pylint: disable=g-import-not-at-top

  from benchmarks import scaling_lib  # pylint: disable=g-import-not-at-top

  lowered = scaling_lib.lower_train_step(config, jax.devices()[:1])
  return parse(lowered.as_text(debug_info=True))


def main(argv):
  from benchmarks import scaling_lib  # pylint: disable=g-import-not-at-top

  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  config = scaling_lib.config_for(f.config, f.batch_size, f.seq_len, dtype=f.dtype)
  title = f'{f.config}, {f.dtype}, batch {config.train.batch_size}, seq_len {config.data.seq_len}'
  print(markdown(train_step_dots(config), title, list_all=f.all))


if __name__ == '__main__':
  # Defined only when run: ``run`` imports this module's functions, and flags are global.
  flags.DEFINE_string('config', 'default', 'A configs/ file by name: default, small, ...')
  flags.DEFINE_enum('dtype', 'bfloat16', ['float32', 'bfloat16'], 'Matmul dtype.')
  flags.DEFINE_integer('batch_size', None, "Global batch (default: the config's).")
  flags.DEFINE_integer('seq_len', None, "Window length (default: the config's).")
  flags.DEFINE_bool('all', False, 'List every dot, not only the wide ones.')
  app.run(main)
