"""``samplernn-tune --report``: a study as ``report.md`` and pictures, read from its storage.

Trials ranked by objective (finished ones first, then pruned, then failed) with their
parameters and a link to their run folder; Optuna's matplotlib pictures of the optimization
history, the validation curves and the parameter importances.
"""

import math
import os
import shlex
import warnings

import optuna

from samplernn_jax import files

_STATE_ORDER = {'COMPLETE': 0, 'PRUNED': 1, 'RUNNING': 2, 'WAITING': 3, 'FAIL': 4}


def _ranked(study: optuna.Study) -> list:
  sign = 1.0 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1.0

  def key(t):
    value = t.value if t.value is not None else math.inf * sign
    last = max(t.intermediate_values.items(), default=(0, math.inf * sign))
    # Pruned trials rank by how far they got, then by their last validation.
    return (_STATE_ORDER.get(t.state.name, 9), sign * value, -last[0], sign * last[1], t.number)

  return sorted(study.get_trials(deepcopy=False), key=key)


def _fmt(v) -> str:
  if isinstance(v, float):
    return f'{v:.4g}'
  return '' if v is None else str(v)


def _picture(study, plot, path: str, **kwargs):
  """Saves one optuna.visualization.matplotlib plot; None when the study can't draw it yet."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')  # The matplotlib backend is marked experimental.
      ax = plot(study, **kwargs)
  except (ValueError, RuntimeError, ZeroDivisionError) as e:  # E.g. too few trials.
    plt.close('all')
    return f'({type(e).__name__}: {e})'
  fig = ax.figure if hasattr(ax, 'figure') else ax.flat[0].figure
  fig.set_size_inches(8, 4.5)
  fig.tight_layout()
  with files.atomic_write(path, 'wb') as f:
    fig.savefig(f, format='png', dpi=100)
  plt.close(fig)
  return None


def best_trial(study: optuna.Study):
  done = [
    t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE
  ]
  return study.best_trial if done else None


def longer_command(trial) -> str:
  """The trial's samplernn-train command with twice its epochs (resumes its workdir)."""
  command = trial.user_attrs.get('command', '')
  epochs = trial.user_attrs.get('num_epochs')
  if not (command and epochs):
    return command
  args = [a for a in shlex.split(command) if not a.startswith('--config.train.num_epochs=')]
  return shlex.join(args + [f'--config.train.num_epochs={2 * epochs}'])


def write(study: optuna.Study, study_dir: str) -> tuple:
  """Writes ``study_dir/report.md`` and ``study_dir/report/*.png``; returns (path, command)."""
  from optuna.visualization import matplotlib as vis

  study_dir = os.path.abspath(study_dir)
  pictures = os.path.join(study_dir, 'report')
  os.makedirs(pictures, exist_ok=True)
  trials = _ranked(study)
  objective = study.user_attrs.get('objective', 'value')
  names = sorted({k for t in trials for k in t.params})
  lines = [
    f'# Study `{study.study_name}`',
    '',
    f'Objective: **{objective}** ({study.direction.name.lower()}d). '
    f'{len(trials)} trials: '
    + ', '.join(
      f'{sum(t.state.name == s for t in trials)} {s.lower()}'
      for s in _STATE_ORDER
      if any(t.state.name == s for t in trials)
    )
    + '.',
    '',
  ]
  best = best_trial(study)
  command = longer_command(best) if best is not None else ''
  if best is not None:
    lines += [
      f'Best: trial {best.number}, {objective} = {best.value:.4f}, '
      f'[{best.user_attrs.get("workdir")}]({best.user_attrs.get("workdir")}/).',
      '',
      'Train it longer (it resumes from its last checkpoint):',
      '',
      '```sh',
      command,
      '```',
      '',
    ]
  lines += [
    '## Trials',
    '',
    '| rank | trial | state | '
    + objective
    + ' | last validation (step) | '
    + ' | '.join(f'`{n}`' for n in names)
    + ' | run | note |',
    '|' + '---|' * (6 + len(names)) + '---|',
  ]
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
    retried = {
      t.number: optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t)
      for t in trials
    }
  for rank, t in enumerate(trials, 1):
    last = max(t.intermediate_values.items(), default=None)
    workdir = t.user_attrs.get('workdir')
    note = t.user_attrs.get('error', '')
    if retried[t.number] is not None:
      note = (f'retry of trial {retried[t.number]}; ' + note).strip('; ')
    cells = [
      str(rank),
      str(t.number),
      t.state.name.lower(),
      '' if t.value is None else f'{t.value:.4f}',
      f'{abs(last[1]):.4f} ({last[0]})' if last else '',
      *[_fmt(t.params.get(n)) for n in names],
      f'[{workdir}]({workdir}/)' if workdir else '',
      note.replace('|', '/')[:200],
    ]
    lines.append('| ' + ' | '.join(cells) + ' |')
  lines += ['', '## Pictures', '']
  plots = [
    ('history.png', 'Optimization history', vis.plot_optimization_history, {}),
    (
      'intermediate.png',
      'Validation reported during each trial (bits/sample; negated '
      'when the objective is clip_score)',
      vis.plot_intermediate_values,
      {},
    ),
    ('importances.png', 'Parameter importances (PED-ANOVA)', vis.plot_param_importances, {}),
  ]
  for file, title, plot, kwargs in plots:
    problem = _picture(study, plot, os.path.join(pictures, file), **kwargs)
    lines += [
      f'### {title}',
      '',
      f'![{title}](report/{file})' if problem is None else f'Not drawn {problem}.',
      '',
    ]
  path = os.path.join(study_dir, 'report.md')
  with files.atomic_write(path) as out:
    out.write('\n'.join(lines))
  return path, command
