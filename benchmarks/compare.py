r"""One table from several results of ``benchmarks.run``: the train step per run, config, dtype
and RNN form (seconds, depth), and generation per run, config and dtype.

    python -m benchmarks.compare RESULT.json [RESULT.json ...] > TABLE.md

A run is named by its file (``default_cmdbuf_while.json``: ``default_cmdbuf_while``); the
machine, JAX and the ``XLA_FLAGS`` each run had are listed above the tables.
``scripts/gpu_check.sh`` writes its summary with it.
"""

import json
import os
from typing import Any, Dict, List

from absl import app


def _num(x, digits: int = 3) -> str:
  return '–' if x is None else f'{x:.{digits}g}'


def markdown(runs: Dict[str, Dict[str, Any]]) -> str:
  """``runs``: results of ``benchmarks.run`` by name, in the order to list them."""
  lines = ['| run | machine | JAX | XLA_FLAGS |', '| --- | --- | --- | --- |']
  for name, r in runs.items():
    mi = r['machine']
    device = mi.get('gpu_name') or f"{mi['cpu_model']} ({mi['jax_backend']})"
    lines.append(f"| {name} | {device} | {mi['jax']} | `{mi.get('xla_flags') or ''}` |")
  lines += [
    '',
    '| config | dtype | RNN form | run | train s/step | samples/s | depth | compile s |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ]
  train_rows: List[tuple] = []
  for name, r in runs.items():
    for config, c in r['configs'].items():
      t = c.get('train') or {}
      for form, by_dtype in t.get('ours_by_form', {}).items():
        for dtype, f in by_dtype.items():
          train_rows.append((config, dtype, form, name, f))
  for config, dtype, form, name, f in sorted(train_rows, key=lambda row: row[:3]):
    lines.append(
      f"| {config} | {dtype} | {form} | {name} | {_num(f['sec_per_step'])} "
      f"| {_num(f['samples_per_sec'])} | {f.get('depth', '–')} "
      f"| {_num(f['compile_sec'])} |"
    )
  gen_rows = []
  for name, r in runs.items():
    for config, c in r['configs'].items():
      for key, part in sorted((c.get('generate') or {}).items()):
        if key.startswith('batch_'):
          for dtype, f in part['ours_by_dtype'].items():
            gen_rows.append((config, dtype, int(key.split('_')[1]), name, f))
  if gen_rows:
    lines += [
      '',
      '| config | dtype | sequences | run | generate samples/s total '
      '| x real time | first call s |',
      '| --- | --- | --- | --- | --- | --- | --- |',
    ]
    for config, dtype, batch, name, f in sorted(gen_rows, key=lambda row: row[:3]):
      lines.append(
        f"| {config} | {dtype} | {batch} | {name} "
        f"| {_num(f['samples_per_sec_total'])} | {_num(f['x_real_time'])} "
        f"| {_num(f['first_call_sec'])} |"
      )
  return '\n'.join(lines) + '\n'


def main(argv):
  if len(argv) < 2:
    raise app.UsageError('Give one or more RESULT.json files of benchmarks.run.')
  runs = {}
  for path in argv[1:]:
    with open(path) as f:
      runs[os.path.splitext(os.path.basename(path))[0]] = json.load(f)
  print(markdown(runs), end='')


if __name__ == '__main__':
  app.run(main)
