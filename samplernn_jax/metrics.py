"""The training objective and what is reported: cross-entropy, bits per sample, accuracy;
and generation speed, as x real time."""

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


def weighted_sums(logits_BxTxQ, targets_BxT, weights_B):
  """Sums to add up over many batches: ``{'nll': nats, 'hits': argmax hits, 'count'}``.

  Row ``b`` counts ``weights_B[b]`` times (0 for padding rows), so a pass over a split
  gives exact means with ``from_sums``.
  """
  logits = logits_BxTxQ.astype(jnp.float32)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll_BxT = -jnp.take_along_axis(log_probs, targets_BxT[..., None], axis=-1)[..., 0]
  hits_BxT = (jnp.argmax(logits, axis=-1) == targets_BxT).astype(jnp.float32)
  w_B = weights_B.astype(jnp.float32)
  return {
    'nll': jnp.sum(nll_BxT.sum(1) * w_B),
    'hits': jnp.sum(hits_BxT.sum(1) * w_B),
    'count': jnp.sum(w_B) * targets_BxT.shape[1],
  }


def from_sums(sums) -> dict:
  """``{'loss', 'bits_per_sample', 'accuracy'}`` (Python floats) of ``weighted_sums``' totals."""
  count = max(float(sums['count']), 1.0)
  loss = float(sums['nll']) / count
  return {'loss': loss, 'bits_per_sample': loss / _LOG2, 'accuracy': float(sums['hits']) / count}


def x_real_time(samples_per_sequence: float, seconds: float, sample_rate: int) -> float:
  """Generation speed as this project states it everywhere: audio seconds per wall second
  of one sequence ("0.81x real time"; above 1 is faster than real time)."""
  return samples_per_sequence / sample_rate / max(seconds, 1e-9)
