"""Regenerates tests/testdata/run_before_layout: a tiny run trained by the code before the package
was split into layers (commit d9d4ff3), so the tests can check that such a run still resumes
and generates (checkpoints hold no module paths).

  git worktree add /tmp/before d9d4ff3
  python scripts/make_run_before_layout.py --checkout=/tmp/before
"""

import os
import shutil
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

_CHECKOUT = flags.DEFINE_string('checkout', None, 'A checkout of commit d9d4ff3.', required=True)

TRAIN = """
import sys
sys.path.insert(0, {checkout!r})
from samplernn_jax import demo_corpus, train
from tests.conftest import load_config
demo_corpus.synthesize({corpus!r}, sample_rate=8000, num_files=6, seconds=0.1)
config = load_config('tiny')
config.train.num_epochs = 1
config.train.log_every_steps = 0
config.generate.max_generate_per_epoch = 0
train.train_and_evaluate(config, {run!r}, {corpus!r})
"""


def main(argv):
  del argv
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = os.path.join(repo, 'tests', 'testdata', 'run_before_layout')
  with tempfile.TemporaryDirectory() as tmp:
    run, corpus = os.path.join(tmp, 'run'), os.path.join(tmp, 'corpus')
    code = TRAIN.format(checkout=os.path.abspath(_CHECKOUT.value), run=run, corpus=corpus)
    subprocess.run(
      [sys.executable, '-c', code],
      check=True,
      cwd=_CHECKOUT.value,
      env=dict(os.environ, JAX_PLATFORMS='cpu'),
    )
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    for name in ('checkpoints', 'config.json', 'metrics.jsonl'):
      src = os.path.join(run, name)
      (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, os.path.join(out, name))
  print(f'wrote {out}')


if __name__ == '__main__':
  app.run(main)
