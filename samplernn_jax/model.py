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

Each module also has a one-frame form beside its parallel one (``fold`` once, then
``step``), on the same parameters: the sampler (``sampler.py``) runs it.
"""

import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from samplernn_jax import backend
from samplernn_jax import lookup
from samplernn_jax import precision
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
  rnn_form: str = 'layered'  # See SampleRNN.rnn_form.

  def setup(self):
    self.input_proj = precision.Dense(self.dim, dtype=self.dtype, name='input_proj')
    self.rnn = self._stack(name='rnn')
    # PRiSM's conv1d_transpose with stride == width: each step's output h gives
    # h @ U[k] for positions k = 0..R-1. Stored [R, D_in, D_out].
    self.upsample = self.param(
      'upsample',
      nn.initializers.glorot_normal(in_axis=-2, out_axis=-1),
      (self.upsample_ratio, self.dim, self.dim),
    )

  def initial_carry(self, batch_size: int):
    return self.rnn.initial_carry(batch_size)

  def __call__(
    self, samples_BxT, conditioning_BxNxD: Optional[jax.Array], carry, *, deterministic: bool = True
  ):
    """Runs ``N = T / frame_size`` frames; returns ``(carry, cond_Bx(N*R)xD)``."""
    carry, h_BxNxD = self.rnn_outputs(
      samples_BxT, conditioning_BxNxD, carry, deterministic=deterministic
    )
    return carry, self.upsampled(h_BxNxD)

  def upsampled(self, h_BxNxD):
    """``R`` conditioning vectors per frame: ``[B, N*R, D]``."""
    batch, num_frames, _ = h_BxNxD.shape
    # One matmul for all R positions: [D, R*D].
    u_DxRD = jnp.transpose(self.upsample, (1, 0, 2)).reshape(self.dim, -1)
    out = precision.matmul(h_BxNxD, u_DxRD, self.dtype)
    return out.reshape(batch, num_frames * self.upsample_ratio, self.dim)

  def rnn_outputs(
    self, samples_BxT, conditioning_BxNxD: Optional[jax.Array], carry, *, deterministic: bool = True
  ):
    """Like ``__call__`` without the upsampling: ``(carry, h_BxNxD)``, one row per frame."""
    batch, length = samples_BxT.shape
    num_frames = length // self.frame_size
    frames_BxNxF = scale_frame_inputs(
      samples_BxT.reshape(batch, num_frames, self.frame_size), self.q_levels
    )
    x_BxNxD = self.input_proj(frames_BxNxF)
    if conditioning_BxNxD is not None:
      x_BxNxD = x_BxNxD + conditioning_BxNxD
    return self.rnn(x_BxNxD, carry, deterministic=deterministic)

  def _stack(self, **module_kwargs) -> rnn.StackedRNN:
    return rnn.StackedRNN(
      rnn_type=self.rnn_type,
      dim=self.dim,
      num_layers=self.num_layers,
      skip_conn=self.skip_conn,
      learn_h0=self.learn_h0,
      dropout=self.dropout,
      dtype=self.dtype,
      axis_name=self.axis_name,
      form=self.rnn_form,
      **module_kwargs,
    )

  # ----- The one-frame form (the sampler's): fold once, then step one frame at a time ----

  def input_weight(self, params):
    """``[D, G]``: what the conditioning from the tier above is multiplied by (layer 0's
    input gates; the input projection's output is added to it first)."""
    return self._stack(parent=None).first_layer_input(params['rnn'])[0]

  def fold(self, params, below_w_DxG, *, fold_upsampling: bool = True) -> dict:
    """The one-frame form of ``params`` (this tier's tree); pure, matrices in the matmul dtype.

    ``below_w_DxG`` is what the upsampled output feeds (``SampleMLP.input_weight`` or the
    lower tier's ``input_weight``), folded into the upsampling as ``U_k @ below_w`` (``up``,
    ``[D, R*G]``). With ``fold_upsampling=False`` ``U`` and ``below_w`` stay apart (``up``
    ``[D, R*D]`` and ``cond_w``): fewer bytes to stream per frame, more flops.
    """
    hp = jax.lax.Precision.HIGHEST
    proj = params['input_proj']
    folded = {'layers': self._stack(parent=None).fold(params['rnn'], proj['kernel'], proj['bias'])}
    if fold_upsampling:
      up = jnp.einsum('rde,eg->drg', params['upsample'], below_w_DxG, precision=hp)
    else:
      up = jnp.transpose(params['upsample'], (1, 0, 2))
      folded['cond_w'] = below_w_DxG.astype(self.dtype)
    folded['up'] = up.reshape(self.dim, -1).astype(self.dtype)
    return folded

  def step(self, folded, frame_Bxf, cond_BxG: Optional[jax.Array], carry):
    """One frame: ``(carry, conditioning of the R frames below [B, R*G'])``.

    ``cond_BxG``: this frame's conditioning from the tier above, already in gate space
    (the tier above folded this tier's ``input_weight`` into it); None for the top tier.
    """
    layers = folded['layers']
    x_Bxf = scale_frame_inputs(frame_Bxf, self.q_levels)
    gates0 = precision.matmul(x_Bxf, layers[0]['w_ih'], self.dtype) + layers[0]['b_ih']
    if cond_BxG is not None:
      gates0 = gates0 + cond_BxG
    carry, out_BxD = self._stack(parent=None).step(layers, gates0, carry)
    cond = precision.matmul(out_BxD, folded['up'], self.dtype)
    if 'cond_w' in folded:  # Unfolded: upsample, then project all R frames' inputs at once.
      batch = cond.shape[0]
      cond = precision.matmul(cond.reshape(-1, self.dim), folded['cond_w'], self.dtype).reshape(
        batch, -1
      )
    return carry, cond


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
    self.taps = self.param(
      'taps',
      nn.initializers.glorot_uniform(in_axis=-2, out_axis=-1),
      (self.frame_size, q, self.dim),
    )
    self.hidden1 = precision.Dense(self.dim, dtype=self.dtype, name='hidden1')
    self.hidden2 = precision.Dense(self.dim, dtype=self.dtype, name='hidden2')
    self.output_proj = precision.Dense(q, dtype=self.dtype, name='output_proj')

  def tap_tables(self):
    """``T_k = E @ W_k`` for every tap: ``[F, Q, D]``."""
    return precision.einsum('qe,fed->fqd', self.embedding, self.taps, self.dtype)

  def __call__(self, ids_BxL, conditioning_BxTxD):
    """Logits ``[B, T, Q]`` for ``T = L - frame_size + 1`` samples."""
    num_steps = conditioning_BxTxD.shape[1]
    conv_BxTxD = tap_lookup(self.tap_tables(), ids_BxL, num_steps)
    return self._logits(nn.relu(self.hidden1(conv_BxTxD + conditioning_BxTxD)))

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
    einsum = functools.partial(precision.einsum, dtype=self.dtype)
    tables_FxQxD = sharding.split_rows(
      lambda emb_QxQ: einsum('fqd,de->fqe', einsum('qe,fed->fqd', emb_QxQ, taps), w1),
      self.embedding,
      in_axis=0,
      out_axis=1,
      axis_name=self.axis_name,
    )
    u_DxRxD = sharding.split_rows(
      lambda u_RxDxD: einsum('rde,ef->drf', u_RxDxD, w1),
      upsample_RxDxD,
      in_axis=1,
      out_axis=0,
      axis_name=self.axis_name,
    )
    u_DxRD = u_DxRxD.reshape(dim, ratio * dim)
    cond_BxTxD = precision.matmul(h_BxNxD, u_DxRD, self.dtype).reshape(batch, num_steps, dim)
    return self._logits(lookup.tap_lookup_relu(tables_FxQxD, ids_BxL, cond_BxTxD, b1))

  def _logits(self, hidden1_BxTxD):
    return self.output_proj(nn.relu(self.hidden2(hidden1_BxTxD)))

  # ----- The one-sample form (the sampler's): fold once, then step one sample at a time --

  def input_weight(self, params):
    """``[D, D]``: what the conditioning from the lowest frame tier is multiplied by."""
    return params['hidden1']['kernel']

  def fold(self, params) -> dict:
    """The one-sample form of ``params`` (this module's tree); pure.

    The embedding, its ``F``-tap convolution and ``hidden1`` are linear up to ``hidden1``'s
    ReLU, so tap ``k`` becomes one table ``E @ W_k @ W_1`` (``tables``, ``[F*Q, D]``, float32
    rows to gather; ``hidden1``'s bias rides in tap 0's table).
    """
    hidden1 = params['hidden1']
    tables = jnp.einsum(
      'qe,fed,dh->fqh',
      params['embedding'],
      params['taps'],
      hidden1['kernel'],
      precision=jax.lax.Precision.HIGHEST,
    )
    tables = tables.at[0].add(hidden1['bias'])
    return {
      'tables': tables.reshape(-1, self.dim),
      'w2': params['hidden2']['kernel'].astype(self.dtype),
      'b2': params['hidden2']['bias'],
      'w3': params['output_proj']['kernel'].astype(self.dtype),
      'b3': params['output_proj']['bias'],
    }

  def step(self, folded, window_BxF, hidden1_BxD):
    """Logits ``[B, Q]`` of the sample after ``window_BxF`` (the last ``F`` samples), given its
    conditioning already through ``hidden1`` (``hidden1_BxD``, from the folded upsampling)."""
    # One gathered row per tap, summed as it is gathered: gathering [B, F, D] first and
    # reducing over F wrote and re-read the rows (at batch 32, 1.5x slower per sample).
    h = hidden1_BxD
    for k in range(window_BxF.shape[1]):
      h = h + jnp.take(folded['tables'], window_BxF[:, k] + k * self.q_levels, axis=0, mode='clip')
    h = jax.nn.relu(h)
    h = jax.nn.relu(precision.matmul(h, folded['w2'], self.dtype) + folded['b2'])
    return precision.matmul(h, folded['w3'], self.dtype) + folded['b3']


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
  # How each frame tier's stack runs over a window: 'layered' or 'wavefront' (``rnn``); the
  # same parameters and math, different loop depth (``from_config`` resolves 'auto').
  rnn_form: str = 'layered'

  @property
  def big_frame_size(self) -> int:
    return self.frame_sizes[-1]

  def setup(self):
    self.frame_tiers = [
      self._frame_tier(j, name=f'frame_tier_{j}') for j in range(len(self.frame_sizes))
    ]
    self.sample_mlp = self._sample_mlp(name='sample_mlp')

  def _frame_tier(self, j: int, **module_kwargs) -> FrameTier:
    f = self.frame_sizes[j]
    below = self.frame_sizes[j - 1] if j > 0 else 1
    return FrameTier(
      frame_size=f,
      upsample_ratio=f // below,
      dim=self.dim,
      q_levels=self.q_levels,
      rnn_type=self.rnn_type,
      num_layers=self.num_rnn_layers,
      skip_conn=self.skip_conn,
      learn_h0=self.learn_h0,
      dropout=self.rnn_dropout,
      dtype=self.dtype,
      axis_name=self.axis_name,
      rnn_form=self.rnn_form,
      **module_kwargs,
    )

  def _sample_mlp(self, **module_kwargs) -> SampleMLP:
    return SampleMLP(
      frame_size=self.frame_sizes[0],
      dim=self.dim,
      q_levels=self.q_levels,
      dtype=self.dtype,
      axis_name=self.axis_name,
      **module_kwargs,
    )

  def step_modules(self) -> tuple:
    """``(frame tiers, sample MLP)`` unbound: their ``step`` methods need no parameters."""
    return (
      tuple(self._frame_tier(j, parent=None) for j in range(len(self.frame_sizes))),
      self._sample_mlp(parent=None),
    )

  def initial_carry(self, batch_size: int) -> tuple:
    """The reset state: zeros, or the learned h0 when ``learn_h0``; one entry per frame tier."""
    return tuple(tier.initial_carry(batch_size) for tier in self.frame_tiers)

  def __call__(self, x_BxL, carry, *, deterministic: bool = True):
    """Logits for the last ``L - big_frame`` samples of the window ``x_BxL``.

    Args:
      x_BxL: int32 levels, ``L = seq_len + big_frame``.
      carry: from ``initial_carry`` or the previous window's call.
      deterministic: False enables RNN dropout (needs a 'dropout' rng).
    Returns:
      ``(carry, logits_BxTxQ)`` with ``T = L - big_frame``; ``logits[:, t]`` predicts
      ``x[:, big_frame + t]``.
    """
    new_carry, h_BxNxD = self.frame_tiers_forward(x_BxL, carry, deterministic=deterministic)
    f0 = self.frame_sizes[0]
    lowest = self.frame_tiers[0]
    ids_BxL = x_BxL[:, self.big_frame_size - f0 : x_BxL.shape[1] - 1]
    if self.is_initializing():
      # The folded path reads hidden1's kernel, which only the plain path creates.
      return new_carry, self.sample_mlp(ids_BxL, lowest.upsampled(h_BxNxD))
    return new_carry, self.sample_mlp.from_frames(ids_BxL, h_BxNxD, lowest.upsample)

  def frame_tiers_forward(self, x_BxL, carry, *, deterministic: bool = True):
    """Every frame tier over the window, top down: ``(carry, h_BxNxD)``.

    Each upper tier's upsampled output conditions the tier below; ``h_BxNxD`` is the
    lowest tier's RNN output, one row per frame of ``f_0`` samples, before its upsampling
    (which the sample MLP folds with ``hidden1``). The training forward, the sampler's
    priming on a seed, the tests and the benchmarks all run the tiers through this.
    """
    length = x_BxL.shape[1]
    big = self.big_frame_size
    new_carry = [None] * len(self.frame_tiers)
    conditioning = None
    for j in reversed(range(len(self.frame_tiers))):
      f = self.frame_sizes[j]
      frames_BxT = x_BxL[:, big - f : length - f]
      if j > 0:
        new_carry[j], conditioning = self.frame_tiers[j](
          frames_BxT, conditioning, carry[j], deterministic=deterministic
        )
      else:
        new_carry[j], h_BxNxD = self.frame_tiers[j].rnn_outputs(
          frames_BxT, conditioning, carry[j], deterministic=deterministic
        )
    return tuple(new_carry), h_BxNxD

  def fold(self, params, *, fold_upper_upsampling: bool = True) -> dict:
    """The step form of the whole model: ``{'frame_tiers': [...], 'sample_mlp': ...}``.

    Pure (``params`` is ``init_params``' tree); the sampler folds once per checkpoint. Each
    tier's upsampling is folded with what it feeds (the sample MLP's ``hidden1`` for the
    lowest tier; the tier below's first-layer input gates for the others, unless
    ``fold_upper_upsampling`` is False), and each tier's input projection with its first
    layer's input gates. So a tier frame starts with one ``[f, G]`` matmul plus the
    conditioning, and per sample only row gathers, a bias, ReLU, ``hidden2`` and the output
    layer remain. Unfolded, an upper tier streams ``U`` and ``W_ih`` (fewer bytes: better
    while a frame is bound by memory traffic, at small batches); folded, ``U_k @ W_ih``
    (fewer flops: better at large batches). See ``backend.sampler_options``.
    """
    tiers, mlp = self.step_modules()
    folded_tiers = []
    for j, tier in enumerate(tiers):
      if j == 0:
        below_w = mlp.input_weight(params['sample_mlp'])
      else:
        below_w = tiers[j - 1].input_weight(params[f'frame_tier_{j - 1}'])
      folded_tiers.append(
        tier.fold(
          params[f'frame_tier_{j}'], below_w, fold_upsampling=j == 0 or fold_upper_upsampling
        )
      )
    return {'frame_tiers': folded_tiers, 'sample_mlp': mlp.fold(params['sample_mlp'])}


def reset_carry(initial_carry, carry, reset_B):
  """Per sequence: the initial carry where ``reset_B`` is true, else ``carry``."""

  def pick(init, cur):
    mask = reset_B.reshape((-1,) + (1,) * (cur.ndim - 1))
    return jnp.where(mask, init, cur)

  return jax.tree.map(pick, initial_carry, carry)


def from_config(
  model_config: ml_collections.ConfigDict, axis_name: Optional[str] = None
) -> SampleRNN:
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
    dtype=DTYPES[model_config.dtype],
    axis_name=axis_name,
    rnn_form=backend.rnn_form(model_config.rnn_form),
  )


def init_params(model: SampleRNN, rng: jax.Array, batch_size: int = 1):
  """Initial parameters, traced on a one-window dummy batch."""
  x = jnp.zeros((batch_size, 2 * model.big_frame_size), jnp.int32)

  # With learn_h0 the initial carry is itself a parameter, so it is built inside init.
  def init_fn(m, x):
    return m(x, m.initial_carry(x.shape[0]))

  return model.init(rng, x, method=init_fn)['params']


def _keras_embedding_init(key, shape, dtype=jnp.float32):
  """Keras' Embedding default, uniform in [-0.05, 0.05)."""
  return jax.random.uniform(key, shape, dtype, -0.05, 0.05)
