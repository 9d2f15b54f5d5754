"""A CPU-sized search over the tiny and demo models: width, depth, cell, learning rate.

Keeps the quantization fixed, so ``--objective=val_bits`` ranks it.
"""

from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution


def get_space():
  return {
    'model.dim': [16, 32, 64],
    'model.num_rnn_layers': IntDistribution(1, 2),
    'model.rnn_type': ['gru', 'lstm'],
    'model.frame_sizes': [(2, 8), (4, 16), (8,)],
    'train.learning_rate': FloatDistribution(3e-4, 1e-2, log=True),
  }
