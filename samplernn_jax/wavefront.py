"""All layers of a stacked GRU / LSTM in one scan: a wavefront over (layer, time).

At scan step ``s`` layer ``l`` computes its time step ``t = s - l``. Its input is layer
``l - 1``'s output at ``t``, which that layer made at step ``s - 1`` and which is therefore in
the carry. So ``L`` layers over ``T`` steps take ``T + L - 1`` dependent iterations instead of
the layered form's ``L * T``, each one batched product over the layers. On a GPU a scan
iteration is a few kernel launches whatever its size, so this depth, not the FLOPs, bounds a
train step at SampleRNN's sizes (``benchmarks/PERF.md``).

The math is the layered form's (``rnn``), step for step:

* layer 0's input gates ``x @ W_ih + b`` are one matmul over the window, made by the caller
  (as in the layered form); layers above project their input inside the loop, since it is
  made there;
* a layer outside its ``L - 1`` ramp steps (``t < 0`` or ``t >= T``) keeps its carry, so every
  layer ends with exactly the carry the layered form returns (truncated BPTT chains windows);
* dropout: the caller draws one mask per layer input and sequence (Keras' RNN dropout), in
  the layered form's order; here layer ``l``'s mask multiplies its input inside the loop.

The ramp costs ``L - 1`` extra steps of idle layers (``(T + L - 1) / T`` of the recurrent
FLOPs: 5% at 64 frames, 19% at 16, with 4 layers).

The backward is written out, as the layered scans' are: a reverse wavefront in which each
step does ``dhw @ W_hh^T`` for every layer and ``dxw @ W_ih^T`` for the layers above 0,
batched over layers, and the weight gradients are one batched matmul each after the loop
(autodiff would add a rank-``B`` update into them on every step).

Matmuls take the model's dtype (bfloat16 operands accumulate in float32, as in
``precision``); the gate math, carries and residuals stay float32.
"""

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from samplernn_jax import cells


def _bmm(x_LxBxI, w_LxIxO, dtype):
  """A batched product over the leading (layer) axis, accumulated in float32."""
  return jax.lax.dot_general(
    x_LxBxI.astype(dtype),
    w_LxIxO.astype(dtype),
    (((2,), (1,)), ((0,), (0,))),
    preferred_element_type=jnp.float32,
  )


def _weight_grad(x_SxLxBxI, g_SxLxBxO, dtype):
  """``sum over (s, b) of x^T g`` per layer: ``[L, I, O]``, one batched matmul."""
  return jax.lax.dot_general(
    x_SxLxBxI.astype(dtype),
    g_SxLxBxO.astype(dtype),
    (((0, 2), (0, 2)), ((1,), (1,))),
    preferred_element_type=jnp.float32,
  )


def _active_SxL(num_steps: int, num_layers: int) -> np.ndarray:
  """Whether layer ``l`` has a time step ``0 <= s - l < T`` at scan step ``s``."""
  step = np.arange(num_steps + num_layers - 1)[:, None]
  layer = np.arange(num_layers)[None, :]
  return (step >= layer) & (step - layer < num_steps)


def _layer_inputs(h_LxBxD, keep_KxBxD, keep_prob):
  """What layers 1..L-1 read: the outputs of layers 0..L-2, through their dropout masks."""
  x_KxBxD = h_LxBxD[:-1]
  if keep_KxBxD is not None:  # As ``rnn.InputDropout``: x / keep_prob where kept.
    x_KxBxD = jnp.where(keep_KxBxD, x_KxBxD / keep_prob, 0.0)
  return x_KxBxD


def _input_gates(xw0_BxG, h_LxBxD, w_ih_KxDxG, b_ih_KxG, keep_KxBxD, keep_prob, dtype):
  """Every layer's input gates at one step: layer 0's given, the others' projected here."""
  if w_ih_KxDxG.shape[0] == 0:
    return xw0_BxG[None]
  x_KxBxD = _layer_inputs(h_LxBxD, keep_KxBxD, keep_prob)
  xw_KxBxG = _bmm(x_KxBxD, w_ih_KxDxG, dtype) + b_ih_KxG[:, None]
  return jnp.concatenate([xw0_BxG[None], xw_KxBxG], axis=0)


def _padded(xw0_TxBxG, num_layers: int):
  """Layer 0's gates for every scan step (zeros on its idle ramp at the end)."""
  return jnp.pad(xw0_TxBxG, ((0, num_layers - 1), (0, 0), (0, 0)))


def _keep(active_L, new, old):
  return jnp.where(active_L.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)


# ----- GRU -------------------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8))
def gru_wavefront(
  xw0_TxBxG,
  h0_LxBxD,
  w_ih_KxDxG,
  b_ih_KxG,
  w_hh_LxDxG,
  b_hh_LxG,
  keep_KxBxD: Optional[jax.Array],
  keep_prob: float = 1.0,
  dtype=jnp.float32,
):
  """``L`` GRU layers over a time-major window in ``T + L - 1`` scan steps.

  Args:
    xw0_TxBxG: layer 0's input gates, ``x @ W_ih + b_ih`` (``G = 3D``).
    h0_LxBxD: each layer's carry at the start of the window.
    w_ih_KxDxG, b_ih_KxG: the input weights of layers ``1..L-1`` (``K = L - 1``).
    w_hh_LxDxG, b_hh_LxG: every layer's recurrent weights.
    keep_KxBxD: the dropout masks of layers ``1..L-1``' inputs (True: kept), or None.
    keep_prob: ``1 - dropout``: kept inputs are divided by it.
    dtype: the matmul dtype.
  Returns:
    ``(h_last_LxBxD, h_SxLxBxD)``: the carries at the end of the window, and every layer's
    carry after each scan step (``S = T + L - 1``): layer ``l``'s output at time ``t`` is
    ``h_SxLxBxD[t + l, l]``.
  """
  return _gru_fwd(
    xw0_TxBxG, h0_LxBxD, w_ih_KxDxG, b_ih_KxG, w_hh_LxDxG, b_hh_LxG, keep_KxBxD, keep_prob, dtype
  )[0]


def _gru_fwd(
  xw0_TxBxG, h0_LxBxD, w_ih_KxDxG, b_ih_KxG, w_hh_LxDxG, b_hh_LxG, keep_KxBxD, keep_prob, dtype
):
  num_layers = h0_LxBxD.shape[0]
  active = _active_SxL(xw0_TxBxG.shape[0], num_layers)
  # Cast once per window, not in every step of the scan.
  w_ih, w_hh = w_ih_KxDxG.astype(dtype), w_hh_LxDxG.astype(dtype)

  def step(h, inputs):
    xw0, active_L = inputs
    xw = _input_gates(xw0, h, w_ih, b_ih_KxG, keep_KxBxD, keep_prob, dtype)
    hw = _bmm(h, w_hh, dtype) + b_hh_LxG[:, None]
    h_new = _keep(active_L, cells.gru_gates(h, xw, hw)[0], h)
    return h_new, (h_new, xw, hw)

  h_last, (h_SxLxBxD, xw_SxLxBxG, hw_SxLxBxG) = jax.lax.scan(
    step, h0_LxBxD, (_padded(xw0_TxBxG, num_layers), active)
  )
  residuals = (h0_LxBxD, w_ih_KxDxG, w_hh_LxDxG, keep_KxBxD, h_SxLxBxD, xw_SxLxBxG, hw_SxLxBxG)
  return (h_last, h_SxLxBxD), residuals


def _gru_bwd(keep_prob, dtype, residuals, cotangents):
  h0, w_ih_KxDxG, w_hh_LxDxG, keep_KxBxD, h_SxLxBxD, xw_SxLxBxG, hw_SxLxBxG = residuals
  dh_last, dh_SxLxBxD = cotangents
  num_steps = h_SxLxBxD.shape[0] - h0.shape[0] + 1
  active = _active_SxL(num_steps, h0.shape[0])
  h_prev_SxLxBxD = jnp.concatenate([h0[None], h_SxLxBxD[:-1]], axis=0)
  w_ih_t = jnp.swapaxes(w_ih_KxDxG, 1, 2).astype(dtype)
  w_hh_t = jnp.swapaxes(w_hh_LxDxG, 1, 2).astype(dtype)

  def step(dh, inputs):
    dh_out, h_prev, xw, hw, active_L = inputs
    dh = dh + dh_out
    dh_direct, dxw, dhw = cells.gru_gates_bwd(dh, h_prev, xw, hw)
    dxw = _keep(active_L, dxw, jnp.zeros_like(dxw))
    dhw = _keep(active_L, dhw, jnp.zeros_like(dhw))
    dh_prev = _keep(active_L, dh_direct + _bmm(dhw, w_hh_t, dtype), dh)
    return dh_prev + _input_cotangent(dxw, w_ih_t, keep_KxBxD, keep_prob, dtype), (dxw, dhw)

  dh0, (dxw_SxLxBxG, dhw_SxLxBxG) = jax.lax.scan(
    step, dh_last, (dh_SxLxBxD, h_prev_SxLxBxD, xw_SxLxBxG, hw_SxLxBxG, active), reverse=True
  )
  dw_ih, db_ih = _input_weight_grads(h_prev_SxLxBxD, dxw_SxLxBxG, keep_KxBxD, keep_prob, dtype)
  dw_hh = _weight_grad(h_prev_SxLxBxD, dhw_SxLxBxG, dtype)
  return (
    dxw_SxLxBxG[:num_steps, 0],
    dh0,
    dw_ih.astype(w_ih_KxDxG.dtype),
    db_ih,
    dw_hh.astype(w_hh_LxDxG.dtype),
    jnp.sum(dhw_SxLxBxG, axis=(0, 2)),
    None,
  )


gru_wavefront.defvjp(_gru_fwd, _gru_bwd)


def _input_cotangent(dxw_LxBxG, w_ih_t_KxGxD, keep_KxBxD, keep_prob, dtype):
  """What layers 1..L-1's input gates send back to layers 0..L-2's carries (zero for the top
  layer, which feeds no layer in the loop)."""
  if w_ih_t_KxGxD.shape[0] == 0:
    return jnp.zeros(dxw_LxBxG.shape[:2] + (w_ih_t_KxGxD.shape[2],), jnp.float32)
  dx_KxBxD = _bmm(dxw_LxBxG[1:], w_ih_t_KxGxD, dtype)
  if keep_KxBxD is not None:
    dx_KxBxD = jnp.where(keep_KxBxD, dx_KxBxD / keep_prob, 0.0)
  return jnp.pad(dx_KxBxD, ((0, 1), (0, 0), (0, 0)))


def _input_weight_grads(h_prev_SxLxBxD, dxw_SxLxBxG, keep_KxBxD, keep_prob, dtype):
  """``dW_ih`` and ``db_ih`` of layers 1..L-1, after the loop: their inputs are remade from the
  carries before each step (``h_prev``), not kept as residuals."""
  x_SxKxBxD = h_prev_SxLxBxD[:, :-1]
  if keep_KxBxD is not None:
    x_SxKxBxD = jnp.where(keep_KxBxD[None], x_SxKxBxD / keep_prob, 0.0)
  dxw_SxKxBxG = dxw_SxLxBxG[:, 1:]
  return _weight_grad(x_SxKxBxD, dxw_SxKxBxG, dtype), jnp.sum(dxw_SxKxBxG, axis=(0, 2))


# ----- LSTM ------------------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def lstm_wavefront(
  xw0_TxBxG,
  carry,
  w_ih_KxDxG,
  b_KxG,
  w_hh_LxDxG,
  keep_KxBxD: Optional[jax.Array],
  keep_prob: float = 1.0,
  dtype=jnp.float32,
):
  """``L`` LSTM layers over a time-major window in ``T + L - 1`` scan steps.

  As ``gru_wavefront``, with ``carry = (h_LxBxD, c_LxBxD)`` and ``b_KxG`` the input biases of
  layers ``1..L-1`` (an LSTM has one bias per layer, in ``xw``). Returns
  ``((h, c) last, h_SxLxBxD)``.
  """
  return _lstm_fwd(xw0_TxBxG, carry, w_ih_KxDxG, b_KxG, w_hh_LxDxG, keep_KxBxD, keep_prob, dtype)[0]


def _lstm_fwd(xw0_TxBxG, carry, w_ih_KxDxG, b_KxG, w_hh_LxDxG, keep_KxBxD, keep_prob, dtype):
  num_layers = carry[0].shape[0]
  active = _active_SxL(xw0_TxBxG.shape[0], num_layers)
  w_ih, w_hh = w_ih_KxDxG.astype(dtype), w_hh_LxDxG.astype(dtype)

  def step(hc, inputs):
    xw0, active_L = inputs
    h, c = hc
    gates = _input_gates(xw0, h, w_ih, b_KxG, keep_KxBxD, keep_prob, dtype) + _bmm(h, w_hh, dtype)
    h_new, c_new = cells.lstm_cell(gates, c)
    hc = _keep(active_L, h_new, h), _keep(active_L, c_new, c)
    return hc, (hc[0], hc[1], gates)

  last, (h_SxLxBxD, c_SxLxBxD, gates_SxLxBxG) = jax.lax.scan(
    step, carry, (_padded(xw0_TxBxG, num_layers), active)
  )
  residuals = (carry, w_ih_KxDxG, w_hh_LxDxG, keep_KxBxD, h_SxLxBxD, c_SxLxBxD, gates_SxLxBxG)
  return (last, h_SxLxBxD), residuals


def _lstm_bwd(keep_prob, dtype, residuals, cotangents):
  (h0, c0), w_ih_KxDxG, w_hh_LxDxG, keep_KxBxD, h_SxLxBxD, c_SxLxBxD, gates_SxLxBxG = residuals
  (dh_last, dc_last), dh_SxLxBxD = cotangents
  num_steps = h_SxLxBxD.shape[0] - h0.shape[0] + 1
  active = _active_SxL(num_steps, h0.shape[0])
  h_prev_SxLxBxD = jnp.concatenate([h0[None], h_SxLxBxD[:-1]], axis=0)
  c_prev_SxLxBxD = jnp.concatenate([c0[None], c_SxLxBxD[:-1]], axis=0)
  w_ih_t = jnp.swapaxes(w_ih_KxDxG, 1, 2).astype(dtype)
  w_hh_t = jnp.swapaxes(w_hh_LxDxG, 1, 2).astype(dtype)

  def step(dhc, inputs):
    dh_out, gates, c_prev, c, active_L = inputs
    dh, dc = dhc[0] + dh_out, dhc[1]
    dgates, dc_prev = cells.lstm_cell_bwd(dh, dc, gates, c_prev, c)
    dgates = _keep(active_L, dgates, jnp.zeros_like(dgates))
    dh_prev = _keep(active_L, _bmm(dgates, w_hh_t, dtype), dh)
    dh_prev = dh_prev + _input_cotangent(dgates, w_ih_t, keep_KxBxD, keep_prob, dtype)
    return (dh_prev, _keep(active_L, dc_prev, dc)), dgates

  (dh0, dc0), dgates_SxLxBxG = jax.lax.scan(
    step,
    (dh_last, dc_last),
    (dh_SxLxBxD, gates_SxLxBxG, c_prev_SxLxBxD, c_SxLxBxD, active),
    reverse=True,
  )
  dw_ih, db = _input_weight_grads(h_prev_SxLxBxD, dgates_SxLxBxG, keep_KxBxD, keep_prob, dtype)
  dw_hh = _weight_grad(h_prev_SxLxBxD, dgates_SxLxBxG, dtype)
  return (
    dgates_SxLxBxG[:num_steps, 0],
    (dh0, dc0),
    dw_ih.astype(w_ih_KxDxG.dtype),
    db,
    dw_hh.astype(w_hh_LxDxG.dtype),
    None,
  )


lstm_wavefront.defvjp(_lstm_fwd, _lstm_bwd)


def layer_outputs(h_SxLxBxD, num_steps: int) -> list:
  """Each layer's outputs over the window, ``[T, B, D]`` per layer, from the scan's steps."""
  return [h_SxLxBxD[layer : layer + num_steps, layer] for layer in range(h_SxLxBxD.shape[1])]
