r"""Regenerates tests/testdata/prism: checkpoints written by PRiSM SampleRNN's own code.

  pip install -e '.[reference]'
  git clone https://github.com/rncm-prism/prism-samplernn ../prism-samplernn
  git -C ../prism-samplernn checkout f05a772
  python scripts/make_prism_fixtures.py --prism_dir=../prism-samplernn

For each case (tests/testdata/prism/README.md lists them) it builds PRiSM's ``SampleRNN``
as its train.py does, moves every trainable variable away from its initial value (so
biases and recurrent weights matter), saves it as train.py saves (``model.save_weights``,
TensorFlow checkpoint ``model.ckpt-1``) and writes the model's logits on two consecutive
windows, the second with the RNN state carried over and again after a reset. The parity
tests (tests/prism_test.py) import the checkpoint and compare logits within 1e-4.

The committed fixtures came from PRiSM f05a772 on TensorFlow 2.21 with tf-keras; another
TensorFlow gives other random weights, and equally valid fixtures.
"""

import json
import os
import sys

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import reference  # noqa: E402  (needs the repository on sys.path first)

# name -> (PRiSM JSON config, batch size).
CASES = {
  'gru_mulaw': (
    {
      'seq_len': 64,
      'frame_sizes': [4, 16],
      'dim': 32,
      'rnn_type': 'gru',
      'num_rnn_layers': 2,
      'q_type': 'mu-law',
      'q_levels': 256,
      'emb_size': 256,
      'skip_conn': False,
    },
    2,
  ),
  'lstm_linear_skip': (
    {
      'seq_len': 32,
      'frame_sizes': [2, 8],
      'dim': 24,
      'rnn_type': 'lstm',
      'num_rnn_layers': 3,
      'q_type': 'linear',
      'q_levels': 64,
      'emb_size': 64,
      'skip_conn': True,
    },
    2,
  ),
}

FLAGS = flags.FLAGS
flags.DEFINE_string('prism_dir', None, 'A PRiSM SampleRNN checkout (commit f05a772).')
flags.DEFINE_string(
  'out_dir', os.path.join(REPO, 'tests', 'testdata', 'prism'), 'Where the case folders go.'
)
flags.DEFINE_integer('seed', 0, 'Seed of the weight perturbation and the inputs.')


def make_case(
  prism, name: str, prism_config: dict, batch_size: int, out_dir: str, seed: int
) -> None:
  import numpy as np  # pylint: disable=g-import-not-at-top

  tf = prism.tf
  c = prism_config
  model = prism.SampleRNN(
    batch_size=batch_size,
    frame_sizes=c['frame_sizes'],
    q_levels=c['q_levels'],
    q_type=c['q_type'],
    dim=c['dim'],
    rnn_type=c['rnn_type'],
    num_rnn_layers=c['num_rnn_layers'],
    seq_len=c['seq_len'],
    emb_size=c['emb_size'],
    skip_conn=c['skip_conn'],
  )
  big, seq_len = c['frame_sizes'][-1], c['seq_len']
  rng = np.random.default_rng(seed)
  levels = rng.integers(0, c['q_levels'], (batch_size, 2 * seq_len + big, 1)).astype(np.int32)
  x1, x2 = levels[:, : seq_len + big], levels[:, seq_len:]
  model(x1, training=True)  # Builds the variables.
  # Zero biases and untouched recurrent kernels would hide mapping mistakes.
  for v in model.trainable_variables:
    v.assign(v + tf.constant(rng.normal(0, 0.1, v.shape), v.dtype))
  model.reset_rnn_states()
  logits1 = model(x1, training=True).numpy()
  logits2 = model(x2, training=True).numpy()
  model.reset_rnn_states()
  logits2_reset = model(x2, training=True).numpy()

  case_dir = os.path.join(out_dir, name)
  os.makedirs(case_dir, exist_ok=True)
  model.save_weights(os.path.join(case_dir, 'model.ckpt-1'))
  for leftover in ('checkpoint',):  # TensorFlow's bookkeeping file; the tests need none.
    if os.path.exists(os.path.join(case_dir, leftover)):
      os.remove(os.path.join(case_dir, leftover))
  with open(os.path.join(case_dir, 'prism.config.json'), 'w') as f:
    json.dump(prism_config, f, indent=2)
  with open(os.path.join(case_dir, 'variables.json'), 'w') as f:
    json.dump(
      {'batch_size': batch_size, 'variables': {v.name: list(v.shape) for v in model.variables}},
      f,
      indent=2,
    )
  np.savez(
    os.path.join(case_dir, 'reference.npz'),
    x1=x1,
    x2=x2,
    logits1=logits1,
    logits2=logits2,
    logits2_reset=logits2_reset,
  )
  print(f'Wrote {case_dir}')


def main(argv):
  del argv
  try:
    prism = reference.Prism(FLAGS.prism_dir)
  except reference.ReferenceUnavailable as e:
    raise app.UsageError(str(e)) from None
  for name, (prism_config, batch_size) in CASES.items():
    make_case(prism, name, prism_config, batch_size, FLAGS.out_dir, FLAGS.seed)


if __name__ == '__main__':
  app.run(main)
