"""SampleRNN: frame tiers of RNNs over a sample-level MLP (Mehri et al., 2017).

Tiers, top to bottom, for ``frame_sizes = (f_0, ..., f_{n-1})`` (ascending, each
dividing the next; ``big_frame = f_{n-1}``):

* frame tier ``j`` reads non-overlapping frames of ``f_j`` samples, adds the
  conditioning from the tier above, runs a stacked RNN (one step per frame) and
  upsamples each step's output to ``f_j / f_{j-1}`` conditioning vectors for the tier
  below (``f_{-1} = 1``: the lowest frame tier conditions every sample);
* the sample-level MLP predicts each sample from the ``f_0`` samples before it
  (embedded, then convolved) plus its conditioning vector.

A training window ``x_BxL`` holds ``L = seq_len + big_frame`` samples and yields logits
for its last ``seq_len`` samples, exactly as PRiSM slices its inputs. The RNN carry of
every tier is an explicit input and output, so consecutive windows chain exactly.

The same parameters drive the sampler (``sampler.py``), which folds them into one-frame
step functions; a frame tier called on a single frame computes the same step.
"""

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from samplernn_jax import lookup
from samplernn_jax import rnn
from samplernn_jax import sharding

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def scale_frame_inputs(samples, q_levels: int):
  """PRiSM's frame-tier input scaling of integer levels: ``((x / (q/2)) - 1) * 2``."""
  return ((samples.astype(jnp.float32) / (q_levels / 2.0)) - 1.0) * 2.0


def tap_lookup(tables_FxQxD, ids_BxL, num_steps: int):
  """The sample-level convolution over embedded samples, as table lookups.

  ``Conv1D(Embedding(ids))[t] = sum_k E[ids[t + k]] @ W_k = sum_k T_k[ids[t + k]]`` with
  ``T_k = E @ W_k``: the ``F`` per-tap tables replace a ``Q``-wide convolution per sample
  by ``F`` row gathers. Returns ``[B, num_steps, D]``. See ``lookup.tap_lookup``.
  """
  return lookup.tap_lookup(tables_FxQxD, ids_BxL, num_steps)


class FrameTier(nn.Module):
  """One frame-level tier: input Dense, stacked RNN, learned per-position upsampling."""
  frame_size: int
  upsample_ratio: int
  dim: int
  q_levels: int
  rnn_type: str
  num_layers: int
  skip_conn: bool = False
  learn_h0: bool = False
  dropout: float = 0.0
  dtype: Any = jnp.float32
  axis_name: Optional[str] = None  # See SampleRNN.axis_name.

  def setup(self):
    self.input_proj = nn.Dense(self.dim, dtype=self.dtype, name='input_proj')
    self.rnn = rnn.StackedRNN(self.rnn_type, self.dim, self.num_layers, self.skip_conn,
                              self.learn_h0, self.dropout, self.dtype, self.axis_name,
                              name='rnn')
    # PRiSM's conv1d_transpose with stride == width: each step's output h gives
    # h @ U[k] for positions k = 0..R-1. Stored [R, D_in, D_out].
    self.upsample = self.param(
        'upsample', nn.initializers.glorot_normal(in_axis=-2, out_axis=-1),
        (self.upsample_ratio, self.dim, self.dim))

  def initial_carry(self, batch_size: int):
    return self.rnn.initial_carry(batch_size)

  def __call__(self, samples_BxT, conditioning_BxNxD: Optional[jax.Array], carry,
               deterministic: bool = True):
    """Runs ``N = T / frame_size`` frames; returns ``(carry, cond_Bx(N*R)xD)``."""
    carry, h_BxNxD = self.rnn_outputs(samples_BxT, conditioning_BxNxD, carry, deterministic)
    batch, num_frames, _ = h_BxNxD.shape
    # One matmul for all R positions: [D, R*D].
    u_DxRD = jnp.transpose(self.upsample, (1, 0, 2)).reshape(self.dim, -1)
    out = rnn.matmul(h_BxNxD, u_DxRD, self.dtype)
    return carry, out.reshape(batch, num_frames * self.upsample_ratio, self.dim)

  def rnn_outputs(self, samples_BxT, conditioning_BxNxD: Optional[jax.Array], carry,
                  deterministic: bool = True):
    """Like ``__call__`` without the upsampling: ``(carry, h_BxNxD)``, one row per frame."""
    batch, length = samples_BxT.shape
    num_frames = length // self.frame_size
    frames_BxNxF = scale_frame_inputs(
        samples_BxT.reshape(batch, num_frames, self.frame_size), self.q_levels)
    x_BxNxD = _dense_2d(self.input_proj, frames_BxNxF)
    if conditioning_BxNxD is not None:
      x_BxNxD = x_BxNxD + conditioning_BxNxD
    return self.rnn(x_BxNxD, carry, deterministic)


class SampleMLP(nn.Module):
  """The sample-level tier: embedding, ``F``-tap convolution, two ReLU layers, logits."""
  frame_size: int
  dim: int
  q_levels: int
  dtype: Any = jnp.float32
  axis_name: Optional[str] = None  # See SampleRNN.axis_name.

  def setup(self):
    q = self.q_levels
    # Keras defaults, so a fresh model starts like a fresh PRiSM one.
    self.embedding = self.param('embedding', _keras_embedding_init, (q, q))
    self.taps = self.param('taps', nn.initializers.glorot_uniform(in_axis=-2, out_axis=-1),
                           (self.frame_size, q, self.dim))
    self.hidden1 = nn.Dense(self.dim, dtype=self.dtype, name='hidden1')
    self.hidden2 = nn.Dense(self.dim, dtype=self.dtype, name='hidden2')
    self.output_proj = nn.Dense(q, dtype=self.dtype, name='output_proj')

  def tap_tables(self):
    """``T_k = E @ W_k`` for every tap: ``[F, Q, D]``."""
    return jnp.einsum('qe,fed->fqd', self.embedding, self.taps)

  def __call__(self, ids_BxL, conditioning_BxTxD):
    """Logits ``[B, T, Q]`` for ``T = L - frame_size + 1`` samples."""
    num_steps = conditioning_BxTxD.shape[1]
    conv_BxTxD = tap_lookup(self.tap_tables(), ids_BxL, num_steps)
    return self._logits(nn.relu(_dense_2d(self.hidden1, conv_BxTxD + conditioning_BxTxD)))

  def from_frames(self, ids_BxL, h_BxNxD, upsample_RxDxD):
    """``__call__`` on the conditioning ``h @ U[k]`` (``FrameTier`` upsampling), computed
    with ``hidden1``'s kernel folded into the tap tables and ``U``.

    ``hidden1(conv + cond) = sum_k (T_k @ W_1)[ids] + h @ (U_k @ W_1) + b_1``: the folds cost
    ``(F * Q + R * D) * D * D`` once per call and save a ``D x D`` matmul per sample (and
    two in the backward). Needs initialized parameters (``__call__`` creates them).

    Under ``axis_name`` each device folds ``1/N`` of the rows (tables by level, ``U`` by
    input unit) and the folded weights are all-gathered: the folds do not depend on the
    batch, so done whole on every device they would not shrink with more devices.
    """
    batch, num_frames, dim = h_BxNxD.shape
    ratio = upsample_RxDxD.shape[0]
    num_steps = num_frames * ratio
    w1 = self.hidden1.variables['params']['kernel']
    b1 = self.hidden1.variables['params']['bias']
    taps = self.taps
    tables_FxQxD = sharding.split_rows(
        lambda emb_QxQ: jnp.einsum('fqd,de->fqe', jnp.einsum('qe,fed->fqd', emb_QxQ, taps), w1),
        self.embedding,
        in_axis=0, out_axis=1, axis_name=self.axis_name)
    u_DxRxD = sharding.split_rows(
        lambda u_RxDxD: jnp.einsum('rde,ef->drf', u_RxDxD, w1), upsample_RxDxD,
        in_axis=1, out_axis=0, axis_name=self.axis_name)
    u_DxRD = u_DxRxD.reshape(dim, ratio * dim)
    cond_BxTxD = rnn.matmul(h_BxNxD, u_DxRD, self.dtype).reshape(batch, num_steps, dim)
    return self._logits(lookup.tap_lookup_relu(tables_FxQxD, ids_BxL, cond_BxTxD, b1))

  def _logits(self, hidden1_BxTxD):
    hidden = nn.relu(_dense_2d(self.hidden2, hidden1_BxTxD))
    return _dense_2d(self.output_proj, hidden).astype(jnp.float32)


class SampleRNN(nn.Module):
  """The whole model; frame tier ``j`` (``frame_tier_j``) works on frames of ``frame_sizes[j]``."""
  frame_sizes: Sequence[int]
  dim: int
  q_levels: int
  rnn_type: str = 'gru'
  num_rnn_layers: int = 4
  skip_conn: bool = False
  learn_h0: bool = False
  rnn_dropout: float = 0.0
  dtype: Any = jnp.float32
  # Set when the model runs on one device's rows inside ``jax.shard_map`` over this mesh
  # axis (the train step): the parameter folds are split over its devices, and dropout
  # masks are drawn for the global batch, so N devices compute what one device does.
  axis_name: Optional[str] = None

  @property
  def big_frame_size(self) -> int:
    return self.frame_sizes[-1]

  def setup(self):
    lower = (1,) + tuple(self.frame_sizes[:-1])
    self.frame_tiers = [
        FrameTier(frame_size=f, upsample_ratio=f // below, dim=self.dim, q_levels=self.q_levels,
                  rnn_type=self.rnn_type, num_layers=self.num_rnn_layers,
                  skip_conn=self.skip_conn, learn_h0=self.learn_h0, dropout=self.rnn_dropout,
                  dtype=self.dtype, axis_name=self.axis_name, name=f'frame_tier_{j}')
        for j, (f, below) in enumerate(zip(self.frame_sizes, lower))]
    self.sample_mlp = SampleMLP(self.frame_sizes[0], self.dim, self.q_levels, self.dtype,
                                self.axis_name, name='sample_mlp')

  def initial_carry(self, batch_size: int) -> tuple:
    """The reset state: zeros, or the learned h0 when ``learn_h0``; one entry per frame tier."""
    return tuple(tier.initial_carry(batch_size) for tier in self.frame_tiers)

  def __call__(self, x_BxL, carry, deterministic: bool = True):
    """Logits for the last ``L - big_frame`` samples of the window ``x_BxL``.

    Args:
      x_BxL: int32 levels, ``L = seq_len + big_frame``.
      carry: from ``initial_carry`` or the previous window's call.
      deterministic: False enables RNN dropout (needs a 'dropout' rng).
    Returns:
      ``(carry, logits_BxTxQ)`` with ``T = L - big_frame``; ``logits[:, t]`` predicts
      ``x[:, big_frame + t]``.
    """
    length = x_BxL.shape[1]
    big = self.big_frame_size
    new_carry = [None] * len(self.frame_tiers)
    conditioning = None
    for j in reversed(range(1, len(self.frame_tiers))):
      f = self.frame_sizes[j]
      new_carry[j], conditioning = self.frame_tiers[j](
          x_BxL[:, big - f:length - f], conditioning, carry[j], deterministic)
    f0 = self.frame_sizes[0]
    lowest = self.frame_tiers[0]
    frames_BxT = x_BxL[:, big - f0:length - f0]
    ids_BxL = x_BxL[:, big - f0:length - 1]
    if self.is_initializing():
      # The folded path below reads parameters that only the plain path creates.
      new_carry[0], conditioning = lowest(frames_BxT, conditioning, carry[0], deterministic)
      logits = self.sample_mlp(ids_BxL, conditioning)
    else:
      new_carry[0], h_BxNxD = lowest.rnn_outputs(frames_BxT, conditioning, carry[0],
                                                 deterministic)
      logits = self.sample_mlp.from_frames(ids_BxL, h_BxNxD, lowest.upsample)
    return tuple(new_carry), logits


def reset_carry(initial_carry, carry, reset_B):
  """Per sequence: the initial carry where ``reset_B`` is true, else ``carry``."""
  def pick(init, cur):
    mask = reset_B.reshape((-1,) + (1,) * (cur.ndim - 1))
    return jnp.where(mask, init, cur)
  return jax.tree.map(pick, initial_carry, carry)


def from_config(model_config: ml_collections.ConfigDict,
                axis_name: Optional[str] = None) -> SampleRNN:
  """Builds the model described by ``config.model`` (validate the config first).

  ``axis_name``: see ``SampleRNN.axis_name`` (only inside ``shard_map``).
  """
  return SampleRNN(
      frame_sizes=tuple(int(f) for f in model_config.frame_sizes),
      dim=int(model_config.dim),
      q_levels=int(model_config.q_levels),
      rnn_type=model_config.rnn_type,
      num_rnn_layers=int(model_config.num_rnn_layers),
      skip_conn=bool(model_config.skip_conn),
      learn_h0=bool(model_config.learn_h0),
      rnn_dropout=float(model_config.rnn_dropout),
      dtype=DTYPES[model_config.get('dtype', 'float32')],
      axis_name=axis_name)


def init_params(model: SampleRNN, rng: jax.Array, batch_size: int = 1):
  """Initial parameters, traced on a one-window dummy batch."""
  x = jnp.zeros((batch_size, 2 * model.big_frame_size), jnp.int32)

  # With learn_h0 the initial carry is itself a parameter, so it is built inside init.
  def init_fn(m, x):
    return m(x, m.initial_carry(x.shape[0]))
  return model.init(rng, x, method=init_fn)['params']


def _dense_2d(dense: nn.Dense, x):
  """``dense(x)`` on ``x`` flattened to 2-D (see ``rnn.matmul`` for why)."""
  out = dense(x.reshape(-1, x.shape[-1]))
  return out.reshape(x.shape[:-1] + out.shape[-1:])


def _keras_embedding_init(key, shape, dtype=jnp.float32):
  """Keras' Embedding default, uniform in [-0.05, 0.05)."""
  return jax.random.uniform(key, shape, dtype, -0.05, 0.05)
