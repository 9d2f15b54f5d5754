"""The training objective and what is reported: cross-entropy, bits per sample, accuracy."""

import jax
import jax.numpy as jnp
import numpy as np

_LOG2 = float(np.log(2.0))


def loss_and_metrics(logits_BxTxQ, targets_BxT):
  """Mean cross-entropy (nats) and its metrics over every predicted sample.

  Returns ``(loss, metrics)`` with ``metrics = {'loss': nats, 'bits_per_sample': loss / ln 2
  (the paper's unit), 'accuracy': share of argmax hits}``, all float32 scalars.
  """
  logits = logits_BxTxQ.astype(jnp.float32)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll_BxT = -jnp.take_along_axis(log_probs, targets_BxT[..., None], axis=-1)[..., 0]
  loss = jnp.mean(nll_BxT)
  accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == targets_BxT).astype(jnp.float32))
  return loss, {'loss': loss, 'bits_per_sample': loss / _LOG2, 'accuracy': accuracy}
