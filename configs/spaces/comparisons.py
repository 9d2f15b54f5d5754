"""The comparisons users ran by hand: 2 vs 3 tiers, mu-law vs linear, width, depth.

Mixes quantizations, so rank it by ear-like clip scores (``--objective=clip_score``), or run
one study per quantization with ``model.q_type`` set by ``--config.model.q_type`` and the
entry below removed. With ``--sampler=grid`` every combination (16) runs once.
"""

from optuna.distributions import CategoricalDistribution


def get_space():
  return {
    'model.frame_sizes': [(16,), (16, 64)],  # 2-tier (Dadabots) vs 3-tier (PRiSM).
    'model.q_type': ['mu-law', 'linear'],  # Both at 256 levels.
    'model.dim': CategoricalDistribution([512, 1024]),
    'model.num_rnn_layers': [2, 4],
  }
