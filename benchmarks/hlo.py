"""Reading a compiled program's HLO text: computations, their calls, shapes and loop depth.

A leaf module (it imports nothing of the project): ``scaling``, ``run`` and the tests read
compiled programs through it.

``loop_depth`` is the program's sequential depth: how many loop iterations run one after
another. On a GPU every iteration of a ``while`` loop is at least a few kernel launches and a
dependency on the one before, so a step whose FLOPs shrink with more devices still walks its
loops at the same pace: the depth is a cost that FLOP counts hide.
"""

import collections
import re
from typing import Dict, Iterator, List, Sequence, Tuple

_BYTES = {'pred': 1, 's8': 1, 'u8': 1, 's16': 2, 'u16': 2, 'f16': 2, 'bf16': 2, 's32': 4,
          'u32': 4, 'f32': 4, 's64': 8, 'u64': 8, 'f64': 8}
SHAPE = re.compile(r'\b(pred|[suf]\d+|bf16)\[([\d,]*)\]')
_COMPUTATION = re.compile(r'^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$')
_CALLS = re.compile(r'(?:body|condition|to_apply|calls|branch_computations)=\{?%?([\w.\-, %]+)\}?')
_WHILE = re.compile(r'\bwhile\(.*\bbody=%?([\w.\-]+)')
_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_OP_NAME = re.compile(r'op_name="([^"]*)"')


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
  return [name for names in _CALLS.findall(line)
          for name in re.split(r'[,\s%]+', names) if name]


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


def loop_depth(hlo: str, exclude_scopes: Sequence[str] = ()) -> Dict[str, int]:
  """The dependent loop iterations of a compiled program, following calls.

  A computation's depth is the sum over its ``while`` loops of trip count x the body's own
  depth (at least 1), plus the depth of what it calls (of a conditional, its deepest branch). Loops in sequence add up: the sum is
  what a device that runs one kernel at a time walks. A loop whose ``op_name`` contains one of
  ``exclude_scopes`` (``jax.named_scope`` names) is left out, with what it holds.

  Returns ``{'depth': ..., 'loops': ...}``: the entry computation's depth and how many while
  loops were counted. A loop without a known trip count raises ValueError: its depth is
  unknown, and a guess would be no figure.
  """
  lines = collections.defaultdict(list)
  entry = None
  for current, line in instructions(hlo):
    lines[current].append(line)
  for line in hlo.splitlines():
    if line.startswith('ENTRY'):
      entry = _COMPUTATION.match(line).group(1)
  if entry is None:
    raise ValueError('No ENTRY computation in the HLO text.')
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
