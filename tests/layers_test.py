"""The package's layers, read from its import graph (every import, function-level ones too).

* the core (the modules directly in ``samplernn_jax/``) imports no outer layer;
* an outer layer (``listening``, ``corpus``, ``search``, ``compat``) imports the core and
  itself, never another outer layer: what one needs of another is handed in by a command;
* ``commands`` composes them all, and nothing imports it;
* no import cycle anywhere, ``benchmarks`` included.
"""

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
OUTER = ('listening', 'corpus', 'search', 'compat')
TOP = 'commands'


def module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(REPO).with_suffix('').parts)
  if parts[-1] == '__init__':
    parts = parts[:-1]
  return '.'.join(parts)


def modules(*packages: str) -> dict:
  """``{module: path}`` for every ``.py`` file under the given top-level folders."""
  return {module_name(p): p for pkg in packages for p in sorted((REPO / pkg).rglob('*.py'))}


def imports(path: pathlib.Path, known: dict) -> set:
  """The project modules ``path`` imports (``from a import b`` counts ``a.b`` if a module)."""
  found = set()
  package = module_name(path).rsplit('.', 1)[0] if path.name != '__init__.py' else module_name(path)
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        base = '.'.join(
          package.split('.')[: len(package.split('.')) - node.level + 1] + ([base] if base else [])
        )
      names = [f'{base}.{alias.name}' for alias in node.names] + [base]
    else:
      continue
    for name in names:
      while name and name not in known:
        name = name.rpartition('.')[0]
      if name:
        found.add(name)
  return found


def layer(module: str) -> str:
  parts = module.split('.')
  if parts[0] != 'samplernn_jax':
    return parts[0]
  if len(parts) > 2 or (len(parts) == 2 and parts[1] in OUTER + (TOP,)):
    return parts[1] if parts[1] in OUTER + (TOP,) else 'core'
  return 'core'


def graph() -> dict:
  known = modules('samplernn_jax', 'benchmarks')
  return {m: imports(p, known) - {m} for m, p in known.items()}


def test_layers_import_only_what_they_stand_on():
  violations = []
  for module, deps in graph().items():
    if not module.startswith('samplernn_jax'):
      continue
    mine = layer(module)
    for dep in deps:
      theirs = layer(dep)
      if dep in ('samplernn_jax',):
        continue
      if theirs == TOP and mine != TOP:
        violations.append(f'{module} imports the command layer: {dep}')
      elif mine == 'core' and theirs != 'core':
        violations.append(f'core module {module} imports {dep} ({theirs})')
      elif mine in OUTER and theirs not in ('core', mine):
        violations.append(
          f'{module} ({mine}) imports {dep} ({theirs}): hand it in from a command instead'
        )
  assert not violations, '\n'.join(sorted(violations))


def test_no_import_cycles():
  g = graph()
  state, stack, cycles = {}, [], []

  def visit(m):
    state[m] = 'open'
    stack.append(m)
    for dep in sorted(g.get(m, ())):
      if state.get(dep) == 'open':
        cycles.append(' -> '.join(stack[stack.index(dep) :] + [dep]))
      elif dep not in state:
        visit(dep)
    stack.pop()
    state[m] = 'done'

  for m in sorted(g):
    if m not in state:
      visit(m)
  # A package's __init__ importing nothing is not a cycle with its modules.
  assert not cycles, '\n'.join(cycles)


def test_the_graph_sees_the_layers():
  # The walk itself: it finds the imports it is meant to judge.
  g = graph()
  assert 'samplernn_jax.model' in g['samplernn_jax.steps']
  assert 'samplernn_jax.train' in g['samplernn_jax.listening.training_hooks']
  assert 'samplernn_jax.listening.training_hooks' in g['samplernn_jax.commands.train']
  assert layer('samplernn_jax.listening.gallery') == 'listening'
  assert layer('samplernn_jax.train') == 'core'
