"""Reading a compiled program's HLO text: computations, their calls, shapes, loop depth, FLOPs.

A leaf module (it imports nothing of the project): ``scaling_lib``, ``train_step`` and the
tests read compiled programs through it.

``loop_depth`` is the program's sequential depth: how many loop iterations run one after
another. On a GPU every iteration of a ``while`` loop is at least a few kernel launches and a
dependency on the one before, so a step whose FLOPs shrink with more devices still walks its
loops at the same pace: the depth is a cost that FLOP counts hide.

``matmul_flops`` counts the program's matmul and convolution FLOPs as they run: a loop body's
as many times as the loop's trip count. XLA's own ``compiled.cost_analysis()['flops']`` (JAX
0.10.2, XLA:CPU) counts a ``while`` body once: a ``lax.scan`` of 10 steps of an
``[8, 64] @ [64, 64]`` product reports 65,538 flops, not 655,360, so it leaves out all but one
step of every scanned ``h @ W_hh``.
"""

import collections
import re
from typing import Dict, Iterator, List, Sequence, Tuple

_BYTES = {
  'pred': 1,
  's8': 1,
  'u8': 1,
  's16': 2,
  'u16': 2,
  'f16': 2,
  'bf16': 2,
  's32': 4,
  'u32': 4,
  'f32': 4,
  's64': 8,
  'u64': 8,
  'f64': 8,
}
SHAPE = re.compile(r'\b(pred|[suf]\d+|bf16)\[([\d,]*)\]')
_COMPUTATION = re.compile(r'^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$')
_CALLS = re.compile(r'(?:body|condition|to_apply|calls|branch_computations)=\{?%?([\w.\-, %]+)\}?')
_WHILE = re.compile(r'\bwhile\(.*\bbody=%?([\w.\-]+)')
_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_OP_NAME = re.compile(r'op_name="([^"]*)"')
# `%name = SHAPE opcode(operands), attributes`; SHAPE an array or a (possibly nested) tuple.
_DEFINITION = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$')
_OPCODE = re.compile(r'^\s*([\w\-]+)\(')
_DIMS_ATTR = r'{}=\{{([\d,]*)\}}'
# cuBLAS / cuBLASLt calls of XLA:GPU keep the dot's dimensions in their backend config.
_GEMM_TARGETS = ('__cublas$gemm', '__cublas$lt$matmul')
_GEMM_CONTRACTING = re.compile(r'"lhs_contracting_dimensions":\[([^\]]*)\]')


def shape_bytes(shape_text: str) -> int:
  """Bytes of every array in an HLO shape (an array or a tuple of arrays)."""
  total = 0
  for dtype, dims in SHAPE.findall(shape_text):
    n = 1
    for d in filter(None, dims.split(',')):
      n *= int(d)
    total += n * _BYTES.get(dtype, 4)
  return total


def instructions(hlo: str) -> Iterator[Tuple[str, str]]:
  """``(computation name, line)`` for every instruction line of an HLO module's text."""
  current = None
  for line in hlo.splitlines():
    m = _COMPUTATION.match(line)
    if m and not line.startswith(' '):
      current = m.group(1)
    elif current is not None:
      yield current, line


def _called(line: str) -> List[str]:
  return [name for names in _CALLS.findall(line) for name in re.split(r'[,\s%]+', names) if name]


def loop_computations(hlo: str) -> set:
  """Names of the computations that run inside a while loop (bodies and what they call)."""
  calls = collections.defaultdict(set)
  bodies = set()
  for current, line in instructions(hlo):
    calls[current].update(_called(line))
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


def _computations(hlo: str):
  """``({computation name: its instruction lines}, the entry computation's name)``."""
  lines = collections.defaultdict(list)
  entry = None
  for current, line in instructions(hlo):
    lines[current].append(line)
  for line in hlo.splitlines():
    if line.startswith('ENTRY'):
      entry = _COMPUTATION.match(line).group(1)
  if entry is None:
    raise ValueError('No ENTRY computation in the HLO text.')
  return lines, entry


def loop_depth(hlo: str, exclude_scopes: Sequence[str] = ()) -> Dict[str, int]:
  """The dependent loop iterations of a compiled program, following calls.

  A computation's depth is the sum over its ``while`` loops of trip count x the body's own
  depth (at least 1), plus the depth of what it calls (of a conditional, its deepest branch).
  Loops in sequence add up: the sum is what a device that runs one kernel at a time walks. A
  loop whose ``op_name`` contains one of ``exclude_scopes`` (``jax.named_scope`` names) is left
  out, with what it holds.

  Returns ``{'depth': ..., 'loops': ...}``: the entry computation's depth and how many while
  loops were counted. A loop without a known trip count raises ValueError: its depth is
  unknown, and a guess would be no figure.
  """
  lines, entry = _computations(hlo)
  memo = {}
  loops = [0]

  def depth(name: str) -> int:
    if name in memo:
      return memo[name]
    memo[name] = 0  # Guards against a cycle; HLO call graphs have none.
    total = 0
    for line in lines[name]:
      body = _WHILE.search(line)
      if body:
        op_name = _OP_NAME.search(line)
        if op_name and any(scope in op_name.group(1) for scope in exclude_scopes):
          continue
        trips = _TRIP_COUNT.search(line)
        if not trips:
          raise ValueError(f'A while loop without a known trip count: {line.strip()[:200]}')
        loops[0] += 1
        total += int(trips.group(1)) * max(1, depth(body.group(1)))
      elif 'branch_computations=' in line:  # One branch runs.
        total += max((depth(callee) for callee in _called(line)), default=0)
      else:
        total += sum(depth(callee) for callee in _called(line))
    memo[name] = total
    return total

  return {'depth': depth(entry), 'loops': loops[0]}


def _closing(text: str, start: int) -> int:
  """The index just past the bracket that closes the one at ``text[start]``."""
  depth = 0
  for i in range(start, len(text)):
    if text[i] in '({[':
      depth += 1
    elif text[i] in ')}]':
      depth -= 1
      if depth == 0:
        return i + 1
  raise ValueError(f'Unbalanced brackets in: {text[start : start + 200]}')


def _split_top(text: str) -> List[str]:
  """``text`` split at the commas outside brackets."""
  parts, depth, start = [], 0, 0
  for i, ch in enumerate(text):
    if ch in '({[':
      depth += 1
    elif ch in ')}]':
      depth -= 1
    elif ch == ',' and depth == 0:
      parts.append(text[start:i].strip())
      start = i + 1
  if text[start:].strip():
    parts.append(text[start:].strip())
  return parts


def _parse(line: str):
  """``(name, shape text, opcode, operand texts, rest of the line)``, or None."""
  m = _DEFINITION.match(line)
  if not m:
    return None
  name, rest = m.group(1), m.group(2)
  if rest.startswith('('):
    end = _closing(rest, 0)
  else:
    end = rest.find(' ')
    if end < 0:
      return None
  shape, rest = rest[:end], rest[end:]
  op = _OPCODE.match(rest)
  if not op:
    return None
  open_at = rest.index('(', op.start(1))
  close_at = _closing(rest, open_at)
  return name, shape, op.group(1), _split_top(rest[open_at + 1 : close_at - 1]), rest[close_at:]


def _dims(shape_text: str) -> List[int]:
  """The dimensions of the first array in an HLO shape."""
  m = SHAPE.search(shape_text)
  if not m:
    raise ValueError(f'No array shape in {shape_text[:200]!r}')
  return [int(d) for d in m.group(2).split(',') if d]


def _product(dims) -> int:
  n = 1
  for d in dims:
    n *= d
  return n


def _operand_dims(operand: str, shapes: Dict[str, str]) -> List[int]:
  """An operand's dimensions: written beside it (``f32[8,64]{1,0} %x``), else its definition's."""
  if SHAPE.search(operand):
    return _dims(operand)
  return _dims(shapes[operand.split()[-1].lstrip('%')])


def _attr_dims(attrs: str, key: str) -> List[int]:
  m = re.search(_DIMS_ATTR.format(key), attrs)
  return [int(d) for d in m.group(1).split(',') if d] if m else []


def _instruction_flops(parsed, shapes: Dict[str, str]) -> float:
  """FLOPs of one dot, convolution or cuBLAS call (2 per multiply-add); 0 for anything else."""
  _, shape, opcode, operands, attrs = parsed
  if opcode == 'dot':
    lhs = _operand_dims(operands[0], shapes)
    contracted = _product(lhs[d] for d in _attr_dims(attrs, 'lhs_contracting_dims'))
    return 2.0 * _product(_dims(shape)) * contracted
  if opcode == 'convolution':
    kernel = _operand_dims(operands[1], shapes)
    labels = re.search(r'dim_labels=\w+_(\w+)->', attrs)
    out_features = kernel[labels.group(1).index('o')] if labels else kernel[-1]
    # Each output element sums over the kernel's input features and window.
    return 2.0 * _product(_dims(shape)) * _product(kernel) / out_features
  if opcode == 'custom-call' and any(f'"{t}"' in attrs for t in _GEMM_TARGETS):
    m = _GEMM_CONTRACTING.search(attrs)
    lhs = _operand_dims(operands[0], shapes)
    contracting = [int(d) for d in re.findall(r'\d+', m.group(1))] if m else [len(lhs) - 1]
    return 2.0 * _product(_dims(shape)) * _product(lhs[d] for d in contracting)
  return 0.0


def matmul_flops(hlo: str) -> float:
  """The FLOPs of a compiled program's matmuls and convolutions, as they run.

  2 x result elements x contracted size per ``dot`` (and per cuBLAS call of XLA:GPU), 2 x
  result elements x kernel window x input features per ``convolution``; a ``while`` body's
  FLOPs count trip-count times, a fusion's or a call's once, a conditional's deepest branch
  once (an upper bound). Elementwise work is not counted. A loop without a known trip count
  raises ValueError, as in ``loop_depth``.
  """
  lines, entry = _computations(hlo)
  memo = {}

  def flops(name: str) -> float:
    if name in memo:
      return memo[name]
    memo[name] = 0.0
    shapes, total = {}, 0.0
    for line in lines[name]:
      parsed = _parse(line)
      if parsed is None:
        continue
      shapes[parsed[0]] = parsed[1]
      total += _instruction_flops(parsed, shapes)
      body = _WHILE.search(line)
      if body:
        trips = _TRIP_COUNT.search(line)
        if not trips:
          raise ValueError(f'A while loop without a known trip count: {line.strip()[:200]}')
        total += int(trips.group(1)) * flops(body.group(1))
      elif 'branch_computations=' in line:
        total += max((flops(callee) for callee in _called(line)), default=0.0)
      else:
        total += sum(flops(callee) for callee in _called(line))
    memo[name] = total
    return total

  return flops(entry)
