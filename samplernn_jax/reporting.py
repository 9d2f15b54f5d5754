"""Reporting: stdout (or a tqdm bar on a terminal), ``metrics.jsonl`` and TensorBoard.

The one logging path of training. ``metrics.jsonl`` holds one record per logged step (kind
'train': loss, accuracy, timing), validation ('val') and epoch ('epoch'), written and read by
``workdir``; TensorBoard gets the same scalars and the generated clips.
"""

import os
import sys
import time
from typing import Sequence

import jax
import ml_collections
import numpy as np
import tensorboardX

from samplernn_jax import workdir as workdir_lib


class Reporter:
  """Writes what the loop reports; only process 0 writes.

  ``windows_per_epoch`` (steps of each epoch) gives the progress bar its length and the
  time estimate its horizon. Records after ``resumed_step`` (left by a killed run) are
  dropped, so the resumed run logs each step once.
  """

  def __init__(
    self,
    workdir: str,
    config: ml_collections.ConfigDict,
    windows_per_epoch: Sequence[int],
    *,
    resumed_step: int = 0,
  ):
    self.active = jax.process_index() == 0
    self.tty = sys.stdout.isatty()
    self.samples_per_step = int(config.train.batch_size) * int(config.data.seq_len)
    self.sample_rate = int(config.data.sample_rate)
    self.windows_per_epoch = tuple(windows_per_epoch)
    self.workdir = workdir
    self._bar = None
    self._tb = None
    self._step_times = []  # Seconds of this process's first steps, for the time estimate.
    self._eval_every = int(config.train.eval_every_steps)
    # A log file gets a line per this many seconds, not per step (thousands a minute).
    self._print_every = float(config.train.get('print_every_seconds', 0.0))
    self._printed_at = None
    self._validation_timed = False
    self._at = (1, 0)  # (epoch, in_epoch) of the last step reported.
    # A step's time runs from the report of the one before (or the restart after a
    # validation or a save) to its own; an epoch's from the report of the one before.
    self._step_start = self._epoch_start = time.perf_counter()
    if self.active:
      if resumed_step:  # A restore succeeded; a run starting afresh keeps what it finds.
        drop_records_after(workdir, resumed_step)
      self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, workdir_lib.TENSORBOARD))

  @property
  def num_epochs(self) -> int:
    return len(self.windows_per_epoch)

  def _write(self, kind: str, record: dict):
    workdir_lib.append_record(self.workdir, {'kind': kind, **record})
    if self._tb is not None:
      for k, v in record.items():
        if k not in ('step', 'epoch') and isinstance(v, (int, float)):
          self._tb.add_scalar(f'{kind}/{k}', v, record['step'])

  def restart_step_clock(self):
    """The next step's time starts now (what came before was not a step's work)."""
    self._step_start = time.perf_counter()

  def step(self, *, step: int, epoch: int, in_epoch: int, metrics: dict, log: bool):
    """Train step ``step``, the ``in_epoch``-th of the 1-based ``epoch``, was read back.

    ``metrics`` are host floats ('loss', 'accuracy', ...); ``log`` writes a record (and, off
    a terminal, a line); on a terminal the progress bar moves on every step.
    """
    now = time.perf_counter()
    sec_per_step, self._step_start = now - self._step_start, now
    if not self.active:
      return
    epoch_steps = self.windows_per_epoch[epoch - 1]
    self._at = (epoch, in_epoch)
    self._step_times.append(sec_per_step)
    if len(self._step_times) == ESTIMATE_AFTER_STEPS + 1:
      # The first step compiles; the next ones say what an epoch will cost.
      self.message(
        time_estimate(
          float(np.median(self._step_times[1:])),
          epoch_steps,
          self.num_epochs - epoch + (1 - in_epoch / max(epoch_steps, 1)),
        )
      )
    if self.tty:
      self._advance_bar(epoch, in_epoch, metrics)
    if log:
      self._log_step(step, epoch, in_epoch, metrics, sec_per_step)

  def _advance_bar(self, epoch: int, in_epoch: int, metrics: dict):
    if self._bar is None:
      from tqdm import tqdm

      self._bar = tqdm(
        total=self.windows_per_epoch[epoch - 1],
        initial=in_epoch - 1,
        desc=f'Epoch {epoch}/{self.num_epochs}',
        dynamic_ncols=True,
        leave=False,
      )
    self._bar.update(1)
    self._bar.set_postfix(
      loss=f"{metrics['loss']:.3f}", acc=f"{metrics['accuracy']:.3f}", refresh=False
    )

  def _log_step(self, step: int, epoch: int, in_epoch: int, metrics: dict, sec_per_step: float):
    samples_per_sec = self.samples_per_step / sec_per_step if sec_per_step > 0 else float('nan')
    record = {
      'step': step,
      'epoch': epoch,
      **{k: float(v) for k, v in metrics.items()},
      'sec_per_step': sec_per_step,
      'samples_per_sec': samples_per_sec,
    }
    self._write('train', record)
    now = time.perf_counter()
    due = self._printed_at is None or now - self._printed_at >= self._print_every
    if not self.tty and due:
      self._printed_at = now
      epoch_steps = self.windows_per_epoch[epoch - 1]
      print(
        f"Epoch {epoch}/{self.num_epochs}, Step {in_epoch}/{epoch_steps} ({step}), "
        f"Loss: {metrics['loss']:.4f}, Bits/sample: {metrics['bits_per_sample']:.4f}, "
        f"Accuracy: {100 * metrics['accuracy']:.2f}%, {sec_per_step:.3f} sec/step, "
        f"{samples_per_sec:,.0f} samples/s",
        flush=True,
      )

  def epoch(self, *, step: int, epoch: int, metrics: dict):
    """The 1-based ``epoch`` ended at ``step`` with these ``metrics``."""
    now = time.perf_counter()
    seconds, self._epoch_start = now - self._epoch_start, now
    if not self.active:
      return
    self.close_bar()
    self._write('epoch', {'step': step, 'epoch': epoch, **metrics})
    parts = [f'{k}: {v:.4f}' for k, v in metrics.items()]
    print(
      f'Epoch {epoch}/{self.num_epochs} done in {seconds:.1f} s at step {step}; '
      + ', '.join(parts),
      flush=True,
    )

  def evaluation(self, step: int, epoch: int, metrics: dict):
    """A validation at ``step`` ended; the first one timed completes the time estimate."""
    seconds = time.perf_counter() - self._step_start
    if self.active and metrics:
      self._write('val', {'step': step, 'epoch': epoch, **metrics})
      if not self._validation_timed and len(self._step_times) > ESTIMATE_AFTER_STEPS:
        self._validation_timed = True
        self.message(self._estimate_with_validation(seconds))

  def _estimate_with_validation(self, val_seconds: float) -> str:
    """The rest of the run, steps and validations, once one validation was timed."""
    epoch, in_epoch = self._at
    # In steps of this run from the current one: the epochs' ends, and every eval_every-th.
    ends = np.cumsum(self.windows_per_epoch)
    now = int(ends[epoch - 1]) - self.windows_per_epoch[epoch - 1] + in_epoch
    steps_left = int(ends[-1]) - now
    validations = {int(e) for e in ends if e > now}
    if self._eval_every > 0:
      first = (now // self._eval_every + 1) * self._eval_every
      validations.update(range(first, int(ends[-1]) + 1, self._eval_every))
    validations_left = len(validations)
    sec_per_step = float(np.median(self._step_times[1:]))
    total = steps_left * sec_per_step + validations_left * val_seconds
    return (
      f'A validation takes {_duration(val_seconds)}; with {validations_left} more, the rest '
      f'of the run takes about {_duration(total)} ({steps_left} steps).'
    )

  def audio(self, tag: str, audio_N: np.ndarray, step: int):
    if self.active and self._tb is not None:
      self._tb.add_audio(tag, audio_N, step, sample_rate=self.sample_rate)

  def message(self, text: str):
    """A line for people, printed without breaking the progress bar."""
    if not self.active:
      return
    if self._bar is not None:
      self._bar.write(text)
    else:
      print(text, flush=True)

  def close_bar(self):
    if self._bar is not None:
      self._bar.close()
      self._bar = None

  def close(self):
    self.close_bar()
    if self._tb is not None:
      self._tb.close()


# Steps timed (after the compiling first one) before the time per epoch is estimated.
ESTIMATE_AFTER_STEPS = 5
# An epoch longer than this on a CPU gets a hint towards the smaller configs.
_SLOW_CPU_EPOCH_SECONDS = 600


def _duration(seconds: float) -> str:
  if seconds < 10:
    return f'{seconds:.1f} s'
  if seconds < 120:
    return f'{seconds:.0f} s'
  if seconds < 7200:
    return f'{seconds / 60:.0f} min'
  return f'{seconds / 3600:.1f} h'


def time_estimate(sec_per_step: float, steps_per_epoch: int, epochs_left: float) -> str:
  """One line: time per epoch and for the rest of the run; on a slow CPU, what to try."""
  epoch_sec = sec_per_step * steps_per_epoch
  text = (
    f'Estimated {_duration(epoch_sec)} per epoch ({sec_per_step:.3g} s/step x '
    f'{steps_per_epoch} steps), {_duration(epoch_sec * epochs_left)} for the rest of '
    f'the run ({epochs_left:.1f} epochs; validation counted once one is timed).'
  )
  if jax.default_backend() == 'cpu' and epoch_sec > _SLOW_CPU_EPOCH_SECONDS:
    text += (
      ' On a CPU, try a smaller model: --config=configs/demo.py, or '
      '--config.model.dim=256 --config.train.batch_size=16.'
    )
  return text


def drop_records_after(workdir: str, step: int) -> None:
  """Keeps the records of ``metrics.jsonl`` up to ``step``: a resumed run writes the rest.

  Steps after the checkpoint a run resumes from were logged by a run that was killed;
  they are done again, and would otherwise appear twice. A rewrite keeps no damaged line
  (``read_records`` warned of it).
  """
  records = workdir_lib.read_records(workdir)
  kept = [r for r in records if r['step'] <= step]
  if len(kept) != len(records):
    workdir_lib.rewrite_records(workdir, kept)
