"""The train state and its optimizer: PRiSM's optimizers and learning-rate decay.

PRiSM's semantics (train.py there): adam with eps 1e-4, sgd and rmsprop (eps 1e-5) with
momentum, global-norm clipping, and exponential decay ``lr * e^-0.1`` per epoch after
``reduce_learning_rate_after`` epochs.
"""

from typing import Any, Sequence, Union

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from samplernn_jax import model as model_lib

OPTIMIZERS = ('adam', 'sgd', 'rmsprop')
RMSPROP_EPS = 1e-5  # PRiSM's RMSprop epsilon (train.py: create_rmsprop_optimizer).
StepsPerEpoch = Union[int, Sequence[int], None]


# ---------------------------------------------------------------------------------------
# Optimizer
# ---------------------------------------------------------------------------------------


def learning_rate_schedule(
  config: ml_collections.ConfigDict, steps_per_epoch: StepsPerEpoch = None
) -> optax.Schedule:
  """Constant, or PRiSM's ``lr * exp(-decay)`` per epoch from epoch ``reduce_after`` on.

  With ``reduce_learning_rate_after = N`` epochs ``0 .. N-1`` (0-based) use the initial
  rate and epoch ``e >= N`` uses ``lr * exp(-lr_decay_rate * (e - N + 1))`` (PRiSM's Keras
  LearningRateScheduler). ``steps_per_epoch`` is one number or one per epoch (the
  pipeline's ``windows_per_epoch``), needed only when decaying.
  """
  t = config.train
  lr0, after, rate = (
    float(t.learning_rate),
    int(t.reduce_learning_rate_after),
    float(t.lr_decay_rate),
  )
  if after <= 0:
    return optax.constant_schedule(lr0)
  if steps_per_epoch is None:
    raise ValueError(
      'config.train.reduce_learning_rate_after > 0 decays per epoch; pass '
      'steps_per_epoch (the number of training windows per epoch).'
    )
  if np.ndim(steps_per_epoch) == 0:
    per_epoch = int(steps_per_epoch)

    def epoch_of(count):
      return count // max(per_epoch, 1)
  else:
    ends = jnp.asarray(np.cumsum(np.asarray(steps_per_epoch, np.int64)), jnp.int32)

    def epoch_of(count):
      return jnp.searchsorted(ends, count, side='right')

  def schedule(count):
    decays = jnp.maximum(epoch_of(count) - after + 1, 0).astype(jnp.float32)
    return lr0 * jnp.exp(-rate * decays)

  return schedule


def make_optimizer(
  config: ml_collections.ConfigDict, steps_per_epoch: StepsPerEpoch = None
) -> optax.GradientTransformation:
  """Global-norm clipping (``clip_norm``; 0 disables) then adam, sgd or rmsprop.

  PRiSM's Keras optimizers: Adam with ``adam_eps``; SGD with ``momentum``; RMSprop with
  ``momentum``, rho 0.9 and eps 1e-5 inside the square root.
  """
  t = config.train
  lr = learning_rate_schedule(config, steps_per_epoch)
  if t.optimizer == 'adam':
    opt = optax.adam(lr, eps=float(t.adam_eps))
  elif t.optimizer == 'sgd':
    opt = optax.sgd(lr, momentum=float(t.momentum) or None)
  elif t.optimizer == 'rmsprop':
    opt = optax.rmsprop(
      lr, decay=0.9, eps=RMSPROP_EPS, momentum=float(t.momentum) or None, eps_in_sqrt=True
    )
  else:
    raise ValueError(f'config.train.optimizer={t.optimizer!r}; use one of {OPTIMIZERS}.')
  if t.clip_norm and t.clip_norm > 0:
    opt = optax.chain(optax.clip_by_global_norm(float(t.clip_norm)), opt)
  return opt


# ---------------------------------------------------------------------------------------
# Train state
# ---------------------------------------------------------------------------------------


@flax.struct.dataclass
class TrainState:
  """Everything the update step reads and writes (the RNN carry travels beside it)."""

  step: jax.Array  # int32 scalar: updates done.
  params: Any
  opt_state: Any
  rng: jax.Array  # uint32[2] raw key; dropout of step s uses fold_in(rng, s).
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def create_train_state(
  config: ml_collections.ConfigDict,
  rng: jax.Array,
  params: Any = None,
  steps_per_epoch: StepsPerEpoch = None,
) -> TrainState:
  """A fresh state: new parameters from ``rng`` unless ``params`` is given; fresh optimizer."""
  model = model_lib.from_config(config.model)
  if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
    rng = jax.random.key_data(rng)
  init_rng, state_rng = jax.random.split(rng)
  if params is None:
    params = model_lib.init_params(model, init_rng)
  tx = make_optimizer(config, steps_per_epoch)
  return TrainState(
    step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=state_rng, tx=tx
  )
