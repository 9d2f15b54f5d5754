"""The workdir's log: records with their kind, one reader that skips damaged lines, appends
that never glue a record to a line a killed writer cut."""

import json
import logging

import pytest

from samplernn_jax import reporting
from samplernn_jax import workdir as workdir_lib
from tests.conftest import load_config


def _lines(*records) -> str:
  return ''.join(json.dumps(r) + '\n' for r in records)


def test_a_record_after_a_last_line_without_line_break_is_on_a_line_of_its_own(tmp_path):
  # A writer killed between a record and its line break; the resumed run's reporter appends.
  (tmp_path / workdir_lib.METRICS).write_text(
    json.dumps({'kind': 'train', 'step': 3, 'epoch': 1, 'loss': 5.0})
  )
  reporter = reporting.Reporter(str(tmp_path), load_config('tiny'), [10], resumed_step=3)
  reporter.evaluation(3, 1, {'val_loss': 4.0})
  reporter.close()
  assert [(r['kind'], r['step']) for r in workdir_lib.read_records(str(tmp_path))] == [
    ('train', 3),
    ('val', 3),
  ]


def test_records_written_before_kinds_get_the_kind_their_fields_say(tmp_path):
  (tmp_path / workdir_lib.METRICS).write_text(
    _lines(
      {'step': 1, 'epoch': 1, 'loss': 5.5, 'accuracy': 0.0, 'sec_per_step': 0.1},
      {'step': 2, 'epoch': 1, 'val_loss': 5.4, 'val_bits_per_sample': 7.8},
      {'step': 2, 'epoch': 1, 'loss': 5.5, 'val_loss': 5.4, 'learning_rate': 1e-3},
      {'kind': 'train', 'step': 3, 'epoch': 2, 'loss': 5.3},
    )
  )
  records = workdir_lib.read_records(str(tmp_path))
  assert [r['kind'] for r in records] == ['train', 'val', 'epoch', 'train']
  assert [r['step'] for r in workdir_lib.read_records(str(tmp_path), 'train')] == [1, 3]
  assert workdir_lib.read_records(str(tmp_path), 'epoch')[0]['learning_rate'] == 1e-3


def test_damaged_lines_are_skipped_with_one_warning_naming_the_file_and_lines(tmp_path, caplog):
  good = {'kind': 'val', 'step': 5, 'epoch': 1, 'val_loss': 4.0}
  (tmp_path / workdir_lib.METRICS).write_text(
    _lines(good) + '[1, 2]\n3\n' + _lines({'kind': 'val', 'epoch': 1}, good) + '{"kind": "val", "st'
  )
  with caplog.at_level(logging.WARNING):
    assert workdir_lib.read_records(str(tmp_path)) == [good, good]
  (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert str(tmp_path / workdir_lib.METRICS) in warning and '4 damaged' in warning
  for number in (
    'line 2 (not a JSON object)',
    '3 (not a JSON object)',
    "4 (no integer 'step')",
    '6 (not JSON)',
  ):
    assert number in warning, warning


def test_no_log_yet_is_no_records(tmp_path):
  assert workdir_lib.read_records(str(tmp_path)) == []


def test_a_record_needs_a_known_kind(tmp_path):
  with pytest.raises(ValueError, match="kind 'step'"):
    workdir_lib.append_record(str(tmp_path), {'kind': 'step', 'step': 1, 'epoch': 1})
  with pytest.raises(ValueError, match="kind 'steps'"):
    workdir_lib.read_records(str(tmp_path), 'steps')
