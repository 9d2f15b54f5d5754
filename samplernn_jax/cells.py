"""The gate algebra of Keras' GRU (``reset_after=True``) and LSTM cells, forward and backward.

Both scan forms of a stack (``rnn``: one layer after another; ``wavefront``: all layers in one
scan) run these same functions, so a GRU or LSTM step is written once. The matmuls around
them (``x @ W_ih``, ``h @ W_hh``) belong to the scans, which choose how to batch them; here
everything is elementwise and float32.

Gate order is Keras': GRU ``(z, r, h)``, LSTM ``(i, f, g, o)``; PRiSM's weights drop in.
"""

import jax
import jax.numpy as jnp

RNN_TYPES = ('gru', 'lstm')
NUM_GATES = {'gru': 3, 'lstm': 4}


def gru_gates(h_BxD, xw_Bx3D, hw_Bx3D):
  """``(h_next, z, r, candidate)`` of a GRU step from both halves of its gates.

  ``xw = x @ W_ih + b_ih`` and ``hw = h @ W_hh + b_hh``: ``reset_after`` applies ``r`` to
  ``hw``'s candidate part, so the two halves stay apart until here.
  """
  xz, xr, xh = jnp.split(xw_Bx3D, 3, axis=-1)
  hz, hr, hh = jnp.split(hw_Bx3D, 3, axis=-1)
  z = jax.nn.sigmoid(xz + hz)
  r = jax.nn.sigmoid(xr + hr)
  candidate = jnp.tanh(xh + r * hh)
  return z * h_BxD + (1.0 - z) * candidate, z, r, candidate


def gru_gates_bwd(dh_BxD, h_prev_BxD, xw_Bx3D, hw_Bx3D):
  """The backward of ``gru_gates``: ``(dh_prev direct, dxw, dhw)``.

  ``dh_prev direct`` is the part of ``h_prev``'s gradient that skips ``W_hh`` (``dh * z``);
  the caller adds ``dhw @ W_hh^T``.
  """
  _, z, r, candidate = gru_gates(h_prev_BxD, xw_Bx3D, hw_Bx3D)
  dz = dh_BxD * (h_prev_BxD - candidate) * z * (1.0 - z)
  d_candidate = dh_BxD * (1.0 - z) * (1.0 - candidate * candidate)
  dr = d_candidate * jnp.split(hw_Bx3D, 3, axis=-1)[2] * r * (1.0 - r)
  dxw = jnp.concatenate([dz, dr, d_candidate], axis=-1)
  dhw = jnp.concatenate([dz, dr, d_candidate * r], axis=-1)
  return dh_BxD * z, dxw, dhw


def lstm_cell(gates_Bx4D, c_BxD):
  """``(h, c)`` after a step, from the step's gate pre-activations (i, f, g, o)."""
  i, f, g, o = jnp.split(gates_Bx4D, 4, axis=-1)
  c_BxD = jax.nn.sigmoid(f) * c_BxD + jax.nn.sigmoid(i) * jnp.tanh(g)
  return jax.nn.sigmoid(o) * jnp.tanh(c_BxD), c_BxD


def lstm_cell_bwd(dh_BxD, dc_BxD, gates_Bx4D, c_prev_BxD, c_BxD):
  """The backward of ``lstm_cell``: ``(dgates, dc_prev)``; ``dc`` is the cell's own
  incoming gradient (from the next step), ``c`` the cell state the step made."""
  i, f, g, o = jnp.split(gates_Bx4D, 4, axis=-1)
  i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
  tanh_c = jnp.tanh(c_BxD)
  dc = dc_BxD + dh_BxD * o * (1.0 - tanh_c * tanh_c)
  dgates = jnp.concatenate(
    [
      dc * g * i * (1.0 - i),
      dc * c_prev_BxD * f * (1.0 - f),
      dc * i * (1.0 - g * g),
      dh_BxD * tanh_c * o * (1.0 - o),
    ],
    axis=-1,
  )
  return dgates, dc * f
