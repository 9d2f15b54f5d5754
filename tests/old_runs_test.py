"""A run made before the package was split into layers still resumes and generates.

``tests/testdata/run_before_layout`` was trained by commit d9d4ff3
(``scripts/make_run_before_layout.py``): checkpoints hold arrays and a config, no module paths.
"""

import os
import shutil

from samplernn_jax import checkpoint
from samplernn_jax import train
from samplernn_jax import workdir as workdir_lib
from samplernn_jax.corpus import demo_corpus
from samplernn_jax.listening import clips
from tests.conftest import REPO
from tests.conftest import quiet_tiny

BEFORE = REPO / 'tests' / 'testdata' / 'run_before_layout'


def test_a_run_from_before_the_layout_resumes_and_generates(tmp_path):
  run = tmp_path / 'run'
  shutil.copytree(BEFORE, run)
  corpus = str(tmp_path / 'corpus')  # The same files it was trained on (deterministic).
  demo_corpus.synthesize(corpus, sample_rate=8000, num_files=6, seconds=0.1)
  assert checkpoint.latest_step(str(run)) == 25
  final = train.train_and_evaluate(quiet_tiny(num_epochs=2), str(run), corpus)
  assert final['loss'] > 0 and checkpoint.latest_step(str(run)) == 50
  epochs = [r['epoch'] for r in workdir_lib.read_records(str(run), 'epoch')]
  assert epochs == [1, 2]  # Its old records read as epoch records, the new one appended.
  result = clips.generate_files(
    str(run), str(tmp_path / 'out' / 'clip.wav'), step=25, duration=0.02, progress=False
  )
  assert result['step'] == 25 and all(os.path.isfile(p) for p in result['paths'])
