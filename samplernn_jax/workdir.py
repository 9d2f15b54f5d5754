"""A run's folder, the workdir: its files and folders named once, and the records of its log.

    WORKDIR/
      config.json          the config of the latest checkpoint, for people and tools
      checkpoints/STEP/    the Orbax checkpoints (``checkpoint.py``)
      broken_checkpoints/  damaged checkpoints set aside when a run resumes
      metrics.jsonl        one record per line (below)
      data_files.json      the files the last start of the run trained on
      tensorboard/         TensorBoard's event files
      generated/           clips made while training
      gallery/             the listening page, ``index.html``, and its pictures
      clip_profile.json    the training audio's statistics that clips are scored against
      demo_corpus/         the synthesized corpus of a run started without --data_dir

Each record of ``metrics.jsonl`` is a JSON object with its ``kind``, ``step`` and ``epoch``:
``train`` (a logged step: loss, accuracy, bits per sample, timing), ``val`` (a validation:
``val_*``) or ``epoch`` (an epoch's end: its means, the last validation and the learning
rate). ``append_record`` writes one; ``read_records`` is the one reader.
"""

import json
import os
from typing import Optional

from absl import logging

from samplernn_jax import files

CONFIG = 'config.json'
CHECKPOINTS = 'checkpoints'
BROKEN_CHECKPOINTS = 'broken_checkpoints'
METRICS = 'metrics.jsonl'
DATA_FILES = 'data_files.json'
TENSORBOARD = 'tensorboard'
GENERATED = 'generated'
GALLERY = 'gallery'
CLIP_PROFILE = 'clip_profile.json'
DEMO_CORPUS = 'demo_corpus'

KINDS = ('train', 'val', 'epoch')


def append_record(workdir: str, record: dict) -> None:
  """Appends ``record`` (with its ``kind``) to ``metrics.jsonl`` as one line.

  A file that does not end with a line break (its writer was killed mid-line) gets one first,
  so the new record is never glued to the damaged line.
  """
  if record.get('kind') not in KINDS:
    raise ValueError(f'append_record: kind {record.get("kind")!r}; use one of {KINDS}.')
  line = json.dumps(record) + '\n'
  with open(os.path.join(workdir, METRICS), 'a+b') as f:
    if f.seek(0, os.SEEK_END) > 0:
      f.seek(-1, os.SEEK_END)
      if f.read(1) != b'\n':
        line = '\n' + line
    f.write(line.encode())  # One write: a reader never sees half of a line it did not see cut.


def read_records(workdir: str, kind: Optional[str] = None) -> list:
  """The records of ``metrics.jsonl`` in file order (only those of ``kind`` if given).

  Every record has its ``kind``; records written before records carried one get the kind
  their fields say. A damaged line (cut short by a kill, not a JSON object, without an integer
  ``step`` and ``epoch``) is skipped, and one warning names the file and its lines. No file:
  no records.
  """
  if kind is not None and kind not in KINDS:
    raise ValueError(f'read_records: kind {kind!r}; use one of {KINDS}.')
  path = os.path.join(workdir, METRICS)
  try:
    with open(path, encoding='utf-8', errors='replace') as f:
      lines = f.read().splitlines()
  except FileNotFoundError:
    return []
  records, damaged = [], []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    record, problem = _parse(line)
    if problem:
      damaged.append(f'{number} ({problem})')
    elif kind is None or record['kind'] == kind:
      records.append(record)
  if damaged:
    shown = ', '.join(damaged[:5]) + (f' and {len(damaged) - 5} more' if len(damaged) > 5 else '')
    logging.warning('%s: skipped %d damaged line(s): line %s.', path, len(damaged), shown)
  return records


def rewrite_records(workdir: str, records: list) -> None:
  """Replaces ``metrics.jsonl`` with ``records`` (whole or not at all)."""
  with files.atomic_write(os.path.join(workdir, METRICS)) as f:
    f.writelines(json.dumps(r) + '\n' for r in records)


def _parse(line: str) -> tuple:
  """``(record, None)``, or ``(None, what is wrong)`` for a damaged line."""
  try:
    record = json.loads(line)
  except ValueError:
    return None, 'not JSON'
  if not isinstance(record, dict):
    return None, 'not a JSON object'
  for field in ('step', 'epoch'):
    if not isinstance(record.get(field), int) or isinstance(record.get(field), bool):
      return None, f'no integer {field!r}'
  if 'kind' not in record:
    record = {'kind': _old_kind(record), **record}
    if record['kind'] is None:
      return None, 'no kind, and its fields tell none'
  if record['kind'] not in KINDS:
    return None, f'kind {record["kind"]!r}'
  return record, None


def _old_kind(record: dict) -> Optional[str]:
  """The kind of a record written before records carried one, by the fields each kind had."""
  if 'learning_rate' in record:
    return 'epoch'
  if 'sec_per_step' in record or 'loss' in record:
    return 'train'
  if any(k.startswith('val_') for k in record):
    return 'val'
  return None
