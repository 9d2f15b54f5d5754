"""Stacked GRU / LSTM layers for the frame tiers, scanned with ``jax.lax.scan``.

The cells compute exactly what Keras' GRU (``reset_after=True``, gates z, r, h) and LSTM
(gates i, f, c, o) compute, so PRiSM weights drop in unchanged. Two things make them
cheaper than ``flax.linen.RNN``:

* the input projection ``x @ W_ih + b`` of a layer is one matmul over the whole window,
  done before the scan; inside the scan only ``h @ W_hh`` remains;
* the gates of a cell come from one fused matmul (``W_hh`` is ``[D, 3D]`` or ``[D, 4D]``).

A layer's carry is ``h_BxD`` (GRU) or ``(h_BxD, c_BxD)`` (LSTM); a stack's carry is the
tuple of its layers' carries. Carries are explicit inputs and outputs, so consecutive
windows chain exactly (truncated BPTT).

With ``dtype=bfloat16`` only the matmuls' operands are bfloat16 (``precision.matmul``,
float32 accumulation; ``W_hh`` cast once per window, outside the scan). The gate math, the
carries and the scans' residuals stay float32: they are elementwise, cheap next to the
matmuls, and the carry is chained over thousands of steps, where bfloat16 rounding would
accumulate.
"""

import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from samplernn_jax import cells
from samplernn_jax import precision
from samplernn_jax import sharding
from samplernn_jax import wavefront

Carry = Any

RNN_TYPES = cells.RNN_TYPES
NUM_GATES = cells.NUM_GATES
# How a stack runs over a window: one layer's scan after another, or all layers in one scan
# (see ``wavefront``); ``'auto'`` is resolved per backend by ``backend.rnn_form``.
RNN_FORMS = ('auto', 'layered', 'wavefront')


def gru_step(h_BxD, xw_Bx3D, w_hh_Dx3D, b_hh_3D, dtype=jnp.float32):
  """One Keras ``reset_after`` GRU step; ``xw`` already holds ``x @ W_ih + b_ih``."""
  hw_Bx3D = precision.matmul(h_BxD, w_hh_Dx3D, dtype) + b_hh_3D
  return cells.gru_gates(h_BxD, xw_Bx3D, hw_Bx3D)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def gru_scan(xw_TxBx3D, h_BxD, w_hh_Dx3D, b_hh_3D, dtype=jnp.float32):
  """``gru_step`` over a time-major window: returns ``(h_last_BxD, h_TxBxD)``.

  Its backward is written out: the reverse scan does only ``dh @ W_hh^T`` per step, and
  ``dW_hh`` is one matmul over the whole window after it (autodiff would accumulate a
  rank-B update into ``dW_hh`` on every step).
  """
  w_hh = w_hh_Dx3D.astype(dtype)  # Once per window, not in every step of the scan.

  def step(h, xw):
    h = gru_step(h, xw, w_hh, b_hh_3D, dtype)
    return h, h

  return jax.lax.scan(step, h_BxD, xw_TxBx3D)


def _gru_scan_fwd(xw_TxBx3D, h_BxD, w_hh_Dx3D, b_hh_3D, dtype):
  w_hh = w_hh_Dx3D.astype(dtype)

  def step(h, xw):
    hw = precision.matmul(h, w_hh, dtype) + b_hh_3D
    h = cells.gru_gates(h, xw, hw)[0]
    return h, (h, hw)

  h_last, (h_TxBxD, hw_TxBx3D) = jax.lax.scan(step, h_BxD, xw_TxBx3D)
  residuals = (xw_TxBx3D, h_BxD, w_hh_Dx3D, h_TxBxD, hw_TxBx3D)
  return (h_last, h_TxBxD), residuals


def _gru_scan_bwd(dtype, residuals, cotangents):
  xw_TxBx3D, h0_BxD, w_hh_Dx3D, h_TxBxD, hw_TxBx3D = residuals
  dh_last, dh_TxBxD = cotangents
  h_prev_TxBxD = jnp.concatenate([h0_BxD[None], h_TxBxD[:-1]], axis=0)
  w_hh_t = w_hh_Dx3D.T.astype(dtype)

  def step(dh, inputs):
    dh_out, xw, hw, h_prev = inputs
    dh_direct, dxw, dhw = cells.gru_gates_bwd(dh + dh_out, h_prev, xw, hw)
    return dh_direct + precision.matmul(dhw, w_hh_t, dtype), (dxw, dhw)

  dh0, (dxw_TxBx3D, dhw_TxBx3D) = jax.lax.scan(
    step, dh_last, (dh_TxBxD, xw_TxBx3D, hw_TxBx3D, h_prev_TxBxD), reverse=True
  )
  d = h0_BxD.shape[-1]
  # One matmul over all T * B rows instead of T rank-B updates.
  dw_hh = precision.matmul(h_prev_TxBxD.reshape(-1, d).T, dhw_TxBx3D.reshape(-1, 3 * d), dtype)
  db_hh = jnp.sum(dhw_TxBx3D, axis=(0, 1))
  return (dxw_TxBx3D, dh0, dw_hh.astype(w_hh_Dx3D.dtype), db_hh)


gru_scan.defvjp(_gru_scan_fwd, _gru_scan_bwd)


def lstm_step(carry, xw_Bx4D, w_hh_Dx4D, dtype=jnp.float32):
  """One Keras LSTM step; ``carry`` is ``(h, c)`` and ``xw`` holds ``x @ W_ih + b``."""
  h_BxD, c_BxD = carry
  gates = xw_Bx4D + precision.matmul(h_BxD, w_hh_Dx4D, dtype)
  return cells.lstm_cell(gates, c_BxD)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def lstm_scan(xw_TxBx4D, carry, w_hh_Dx4D, dtype=jnp.float32):
  """``lstm_step`` over a time-major window: returns ``((h, c) last, h_TxBxD)``.

  Its backward is written out as ``gru_scan``'s: ``dgates @ W_hh^T`` per step, ``dW_hh``
  one matmul after the scan. Autodiff would add a rank-B update into ``dW_hh`` on every
  step, in ``W_hh``'s dtype: in bfloat16, once the weight is cast outside the scan.
  """
  w_hh = w_hh_Dx4D.astype(dtype)  # Once per window, not in every step of the scan.

  def step(hc, xw):
    hc = lstm_step(hc, xw, w_hh, dtype)
    return hc, hc[0]

  return jax.lax.scan(step, carry, xw_TxBx4D)


def _lstm_scan_fwd(xw_TxBx4D, carry, w_hh_Dx4D, dtype):
  w_hh = w_hh_Dx4D.astype(dtype)

  def step(hc, xw):
    gates = xw + precision.matmul(hc[0], w_hh, dtype)
    hc = cells.lstm_cell(gates, hc[1])
    return hc, (hc[0], hc[1], gates)

  last, (h_TxBxD, c_TxBxD, gates_TxBx4D) = jax.lax.scan(step, carry, xw_TxBx4D)
  return (last, h_TxBxD), (carry, w_hh_Dx4D, h_TxBxD, c_TxBxD, gates_TxBx4D)


def _lstm_scan_bwd(dtype, residuals, cotangents):
  (h0_BxD, c0_BxD), w_hh_Dx4D, h_TxBxD, c_TxBxD, gates_TxBx4D = residuals
  (dh_last, dc_last), dh_TxBxD = cotangents
  h_prev_TxBxD = jnp.concatenate([h0_BxD[None], h_TxBxD[:-1]], axis=0)
  c_prev_TxBxD = jnp.concatenate([c0_BxD[None], c_TxBxD[:-1]], axis=0)
  w_hh_t = w_hh_Dx4D.T.astype(dtype)

  def step(dhc, inputs):  # The gate algebra stays float32, as in the forward.
    dh_out, gates, c_prev, c = inputs
    dgates, dc_prev = cells.lstm_cell_bwd(dhc[0] + dh_out, dhc[1], gates, c_prev, c)
    return (precision.matmul(dgates, w_hh_t, dtype), dc_prev), dgates

  (dh0, dc0), dgates_TxBx4D = jax.lax.scan(
    step, (dh_last, dc_last), (dh_TxBxD, gates_TxBx4D, c_prev_TxBxD, c_TxBxD), reverse=True
  )
  d = h0_BxD.shape[-1]
  dw_hh = precision.matmul(h_prev_TxBxD.reshape(-1, d).T, dgates_TxBx4D.reshape(-1, 4 * d), dtype)
  return dgates_TxBx4D, (dh0, dc0), dw_hh.astype(w_hh_Dx4D.dtype)


lstm_scan.defvjp(_lstm_scan_fwd, _lstm_scan_bwd)


class RNNLayer(nn.Module):
  """One recurrent layer over a whole window: hoisted input projection, scanned recurrence."""

  rnn_type: str
  dim: int
  in_features: int
  learn_h0: bool = False
  dtype: Any = jnp.float32

  def setup(self):
    gates = NUM_GATES[self.rnn_type] * self.dim
    # Keras' initializers: Glorot-uniform input kernel, orthogonal recurrent kernel.
    self.w_ih = self.param('w_ih', nn.initializers.glorot_uniform(), (self.in_features, gates))
    self.w_hh = self.param('w_hh', nn.initializers.orthogonal(), (self.dim, gates))
    if self.rnn_type == 'gru':
      self.b_ih = self.param('b_ih', nn.initializers.zeros, (gates,))
      self.b_hh = self.param('b_hh', nn.initializers.zeros, (gates,))
    else:
      self.b = self.param('b', _lstm_bias_init, (gates,))
    if self.learn_h0:
      self.h0 = self.param('h0', nn.initializers.zeros, (self.dim,))
      if self.rnn_type == 'lstm':
        self.c0 = self.param('c0', nn.initializers.zeros, (self.dim,))

  def initial_carry(self, batch_size: int) -> Carry:
    """Zeros, or the learned initial state broadcast over the batch."""

    def state(name):
      if self.learn_h0:
        return jnp.broadcast_to(getattr(self, name), (batch_size, self.dim)).astype(jnp.float32)
      return jnp.zeros((batch_size, self.dim), jnp.float32)

    if self.rnn_type == 'gru':
      return state('h0')
    return state('h0'), state('c0')

  def project_inputs(self, x_BxTxI, w_ih_IxG):
    """The input half of every gate for the whole window: one matmul."""
    bias = self.b_ih if self.rnn_type == 'gru' else self.b
    return precision.matmul(x_BxTxI, w_ih_IxG, self.dtype) + bias

  def scan(self, xw_BxTxG, carry: Carry):
    """Runs the recurrence over projected inputs; returns (carry, h_BxTxD)."""
    w_hh = self.w_hh
    dtype = self.dtype
    xw_TxBxG = jnp.swapaxes(xw_BxTxG, 0, 1)
    if self.rnn_type == 'gru':
      carry, h_TxBxD = gru_scan(xw_TxBxG, carry, w_hh, self.b_hh, dtype)
    else:
      carry, h_TxBxD = lstm_scan(xw_TxBxG, carry, w_hh, dtype)
    return carry, jnp.swapaxes(h_TxBxD, 0, 1)


class StackedRNN(nn.Module):
  """``num_layers`` RNN layers; with ``skip_conn`` wired as PRiSM wires them.

  PRiSM's skip connections: the first layer reads ``concat(x, x)`` and the output is
  ``sum_i Dense_i(h_i)`` over the layers' outputs, where only ``Dense_0`` has a bias.
  """

  rnn_type: str
  dim: int
  num_layers: int
  skip_conn: bool = False
  learn_h0: bool = False
  dropout: float = 0.0
  dtype: Any = jnp.float32
  axis_name: Optional[str] = None  # See model.SampleRNN.axis_name.
  form: str = 'layered'  # 'layered' or 'wavefront' (see ``wavefront``); same parameters.

  def setup(self):
    if self.rnn_type not in RNN_TYPES:
      raise ValueError(f'rnn_type must be one of {RNN_TYPES}, got {self.rnn_type!r}.')
    self.layers = [
      RNNLayer(
        rnn_type=self.rnn_type,
        dim=self.dim,
        in_features=self.dim * (2 if (self.skip_conn and i == 0) else 1),
        learn_h0=self.learn_h0,
        dtype=self.dtype,
        name=f'layer_{i}',
      )
      for i in range(self.num_layers)
    ]
    self.input_dropout = InputDropout(self.dropout, self.axis_name)
    if self.skip_conn:
      self.skip_out = [
        precision.Dense(
          self.dim,
          use_bias=(i == 0),
          dtype=self.dtype,
          kernel_init=nn.initializers.he_uniform(),
          name=f'skip_out_{i}',
        )
        for i in range(self.num_layers)
      ]

  def initial_carry(self, batch_size: int) -> tuple:
    return tuple(layer.initial_carry(batch_size) for layer in self.layers)

  def __call__(self, x_BxTxD, carry: Sequence[Carry], *, deterministic: bool = True):
    """Returns ``(carry, out_BxTxD)`` for a window of ``T`` steps."""
    use_dropout = self.dropout > 0 and not deterministic
    first = self.layers[0]
    h, w_ih = x_BxTxD, first.w_ih
    if self.skip_conn:
      if use_dropout:  # Each half of concat(x, x) gets a mask of its own.
        h = jnp.concatenate([h, h], axis=-1)
      else:
        w_ih = self._summed_halves(w_ih)
    if use_dropout:
      h = self.input_dropout(h)
    xw0_BxTxG = first.project_inputs(h, w_ih)
    if self.form == 'wavefront' and self.num_layers > 1:
      new_carry, outputs = self._wavefront(xw0_BxTxG, carry, use_dropout=use_dropout)
    else:
      new_carry, outputs = self._layered(xw0_BxTxG, carry, use_dropout=use_dropout)
    if not self.skip_conn:
      return new_carry, outputs[-1]
    out = None
    for skip_out, h in zip(self.skip_out, outputs):
      out = skip_out(h) if out is None else out + skip_out(h)
    return new_carry, out

  def _layered(self, xw0_BxTxG, carry, *, use_dropout: bool):
    """One layer's scan after another: ``(carry, every layer's h_BxTxD)``."""
    new_carry, outputs = [], []
    xw = xw0_BxTxG
    for i, layer in enumerate(self.layers):
      if i > 0:
        h = self.input_dropout(outputs[-1]) if use_dropout else outputs[-1]
        xw = layer.project_inputs(h, layer.w_ih)
      layer_carry, h = layer.scan(xw, carry[i])
      new_carry.append(layer_carry)
      outputs.append(h)
    return tuple(new_carry), outputs

  def _wavefront(self, xw0_BxTxG, carry, *, use_dropout: bool):
    """All layers in one scan (``wavefront``): ``(carry, every layer's h_BxTxD)``."""
    batch, num_steps, _ = xw0_BxTxG.shape
    upper = self.layers[1:]
    keep, keep_prob = None, 1.0
    if use_dropout:  # Drawn in the layered form's order, so both forms drop the same units.
      keep_prob = 1.0 - self.dropout
      keep = jnp.stack([self.input_dropout.keep_mask((batch, 1, self.dim))[:, 0] for _ in upper])
    xw0_TxBxG = jnp.swapaxes(xw0_BxTxG, 0, 1)
    w_ih = jnp.stack([layer.w_ih for layer in upper])
    w_hh = jnp.stack([layer.w_hh for layer in self.layers])
    if self.rnn_type == 'gru':
      h0 = jnp.stack(carry)
      h_last, h_SxLxBxD = wavefront.gru_wavefront(
        xw0_TxBxG,
        h0,
        w_ih,
        jnp.stack([layer.b_ih for layer in upper]),
        w_hh,
        jnp.stack([layer.b_hh for layer in self.layers]),
        keep,
        keep_prob,
        self.dtype,
      )
      new_carry = tuple(h_last)
    else:
      hc0 = tuple(jnp.stack(part) for part in zip(*carry))
      (h_last, c_last), h_SxLxBxD = wavefront.lstm_wavefront(
        xw0_TxBxG,
        hc0,
        w_ih,
        jnp.stack([layer.b for layer in upper]),
        w_hh,
        keep,
        keep_prob,
        self.dtype,
      )
      new_carry = tuple(zip(h_last, c_last))
    outputs = wavefront.layer_outputs(h_SxLxBxD, num_steps)
    if not self.skip_conn:  # Only the top layer's outputs leave the stack.
      outputs = [None] * (self.num_layers - 1) + outputs[-1:]
    return new_carry, [jnp.swapaxes(h, 0, 1) if h is not None else None for h in outputs]

  # ----- The one-step form (the sampler's): fold once, then step one time step -----------

  def _summed_halves(self, w_ih):
    """PRiSM's first layer reads ``concat(x, x)``: ``concat(x, x) @ W == x @ (W_top + W_bot)``,
    half the projection's work."""
    return w_ih[: self.dim] + w_ih[self.dim :] if self.skip_conn else w_ih

  def first_layer_input(self, params) -> tuple:
    """``(W_IxG, b_G)``: what the first layer's input gates apply to the stack's input."""
    layer = params['layer_0']
    return (
      self._summed_halves(layer['w_ih']),
      layer['b_ih'] if self.rnn_type == 'gru' else layer['b'],
    )

  def fold(self, params, in_w, in_b) -> list:
    """The step form of ``params``: one dict per layer, matrices in the matmul dtype.

    The stack's input is taken to be ``x @ in_w + in_b`` (the tier's input projection), so
    layer 0's ``w_ih``/``b_ih`` are that projection composed with its input gates and a
    frame costs one ``[f, G]`` matmul. Pure: ``params`` is this module's parameter tree.
    """
    hp = jax.lax.Precision.HIGHEST
    w0, b0 = self.first_layer_input(params)
    layers = []
    for i in range(self.num_layers):
      lp = params[f'layer_{i}']
      if i == 0:
        layer = {
          'w_ih': jnp.dot(in_w, w0, precision=hp),
          'b_ih': jnp.dot(in_b, w0, precision=hp) + b0,
        }
      else:
        layer = {'w_ih': lp['w_ih'], 'b_ih': lp['b_ih'] if self.rnn_type == 'gru' else lp['b']}
      layer['w_hh'] = lp['w_hh']
      if self.rnn_type == 'gru':
        layer['b_hh'] = lp['b_hh']
      if self.skip_conn:
        layer['skip_w'] = params[f'skip_out_{i}']['kernel']
        if i == 0:
          layer['skip_b'] = params[f'skip_out_{i}']['bias']
      layers.append(
        {
          k: v.astype(self.dtype) if k in ('w_ih', 'w_hh', 'skip_w') else v
          for k, v in layer.items()
        }
      )
    return layers

  def step(self, layers, gates0_BxG, carry):
    """One time step of the stack: ``(carry, out_BxD)``, as ``__call__`` computes per step.

    ``gates0_BxG``: layer 0's input gates, ``x @ w_ih + b_ih`` of ``fold``'s layer 0 plus
    whatever else feeds them (the conditioning from the tier above).
    """
    new_carry, out, h = [], None, None
    xw = gates0_BxG
    for i, layer in enumerate(layers):
      if i > 0:
        xw = precision.matmul(h, layer['w_ih'], self.dtype) + layer['b_ih']
      if self.rnn_type == 'gru':
        h = gru_step(carry[i], xw, layer['w_hh'], layer['b_hh'], self.dtype)
        new_carry.append(h)
      else:
        hc = lstm_step(carry[i], xw, layer['w_hh'], self.dtype)
        h = hc[0]
        new_carry.append(hc)
      if self.skip_conn:
        skip = precision.matmul(h, layer['skip_w'], self.dtype)
        if 'skip_b' in layer:
          skip = skip + layer['skip_b']
        out = skip if out is None else out + skip
    return tuple(new_carry), (out if self.skip_conn else h)


class InputDropout(nn.Module):
  """Keras RNN dropout: one input mask per sequence, shared by all time steps.

  ``flax.linen.Dropout(rate, broadcast_dims=(1,))``, except that under ``axis_name`` the
  mask is drawn for the global batch and sliced to this device's rows.
  """

  rate: float
  axis_name: Optional[str] = None

  def keep_mask(self, shape):
    """One draw of the mask, ``shape`` with the batch first: True where kept."""
    return sharding.row_mask(self.make_rng('dropout'), 1.0 - self.rate, shape, self.axis_name)

  @nn.compact
  def __call__(self, x_BxTxD):
    keep_prob = 1.0 - self.rate
    mask_Bx1xD = self.keep_mask((x_BxTxD.shape[0], 1, x_BxTxD.shape[2]))
    return jax.lax.select(
      jnp.broadcast_to(mask_Bx1xD, x_BxTxD.shape), x_BxTxD / keep_prob, jnp.zeros_like(x_BxTxD)
    )


def _lstm_bias_init(key, shape, dtype=jnp.float32):
  """Keras' ``unit_forget_bias``: forget-gate bias 1, all others 0."""
  del key
  dim = shape[0] // 4
  return jnp.zeros(shape, dtype).at[dim : 2 * dim].set(1.0)
