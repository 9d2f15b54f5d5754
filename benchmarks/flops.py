r"""Model FLOPs of SampleRNN per audio sample, from a formula; and what XLA counts.

Notation (``config.model``): ``D = dim``, ``Q = q_levels``, ``L = num_rnn_layers``,
``G`` gates per RNN cell (GRU 3, LSTM 4), frame sizes ``f_0 < ... < f_{n-1}`` (frame tier
``j`` runs once per ``f_j`` samples), upsampling ratio ``R_j = f_j / f_{j-1}`` with
``f_{-1} = 1``, ``s = 1`` with skip connections else 0.

We count the multiply-adds (MACs) of every matmul, convolution and lookup; one MAC is
2 FLOPs. Elementwise work (gates, ReLU, softmax, Adam) is left out: it is under 1% for
the benchmarked shapes. Forward MACs per sample::

    frame tier j, per frame:  f_j D                    input projection
                            + L G (D_in + D) D         RNN input + recurrent kernels
                                                       (D_in = D; 2D for PRiSM's layer 0
                                                        with skip connections)
                            + s L D^2                  skip outputs
                            + R_j D^2                  upsampling (one D x D per position)
    sample-level MLP, per sample:
                              f_0 Q D                  Conv1D over the Q-wide embedding
                            + 2 D^2 + D Q              hidden1, hidden2, output
    per sample:  MLP + sum_j (frame tier j) / f_j

* **train** FLOPs per sample ``= 3 x 2 x forward MACs`` (the backward pass of a matmul is
  two matmuls of the same size); per step multiply by ``batch_size * seq_len``.
* **generate** FLOPs per sample ``= 2 x forward MACs``: a sampler runs each frame tier
  once per ``f_j`` samples and the MLP once per sample, exactly the forward work (the
  categorical draw over ``Q`` is elementwise).

These are *model* FLOPs, the same for this project and PRiSM, so a ratio of model FLOP/s
is a ratio of throughput. This project computes the Conv1D as ``f_0`` row lookups in
tables ``T_k = E W_k`` built once per call (``f_0 Q^2 D`` MACs per call, not per sample)
and feeds PRiSM's doubled skip input through summed kernels; ``form='implemented'``
counts that instead: the *executed* FLOPs, which are what can be set against the
machine's matmul peak (model FLOP/s can exceed it: the lookups skip ``f_0 Q D`` MACs per
sample, most of the work for small ``D``), and what XLA is checked against.

XLA's cost analysis (``compiled.cost_analysis()['flops']``) counts the body of a
``while`` loop once, not once per iteration, so the recurrent matmuls ``h @ W_hh`` inside
``lax.scan`` (forward, and the backward scan) appear for one frame per tier only.
``train_flops_per_step(..., scan_bodies_once=True)`` counts the same way; that is the
number to compare with XLA.
"""

from typing import Dict

import ml_collections

_GATES = {'gru': 3, 'lstm': 4}


def _dims(model_config: ml_collections.ConfigDict):
  m = model_config
  frame_sizes = tuple(int(f) for f in m.frame_sizes)
  return (frame_sizes, int(m.dim), int(m.q_levels), int(m.num_rnn_layers),
          _GATES[m.rnn_type], bool(m.skip_conn))


def frame_tier_macs(model_config, j: int, form: str = 'model') -> Dict[str, int]:
  """MACs of frame tier ``j`` for one frame, split into recurrent and the rest."""
  frame_sizes, d, _, layers, gates, skip = _dims(model_config)
  f = frame_sizes[j]
  ratio = f // (frame_sizes[j - 1] if j > 0 else 1)
  layer0_in = 2 * d if (skip and form == 'model') else d
  input_kernels = gates * d * (layer0_in + (layers - 1) * d)
  recurrent = layers * gates * d * d
  rest = f * d + input_kernels + (layers * d * d if skip else 0) + ratio * d * d
  return {'recurrent': recurrent, 'rest': rest}


def sample_mlp_macs(model_config, form: str = 'model') -> int:
  """MACs of the sample-level MLP per sample (``form='implemented'``: without tables)."""
  frame_sizes, d, q, _, _, _ = _dims(model_config)
  conv = frame_sizes[0] * q * d if form == 'model' else 0
  return conv + 2 * d * d + d * q


def tap_table_macs(model_config) -> int:
  """MACs of this project's per-call tap tables ``T_k = E W_k``: ``f_0 Q^2 D``."""
  frame_sizes, d, q, _, _, _ = _dims(model_config)
  return frame_sizes[0] * q * q * d


def forward_macs_per_sample(model_config, form: str = 'model') -> float:
  """Forward MACs per predicted sample (tables, if counted, are per call: excluded)."""
  frame_sizes = tuple(int(f) for f in model_config.frame_sizes)
  total = float(sample_mlp_macs(model_config, form))
  for j, f in enumerate(frame_sizes):
    tier = frame_tier_macs(model_config, j, form)
    total += (tier['recurrent'] + tier['rest']) / f
  return total


def train_flops_per_sample(model_config) -> float:
  """Model FLOPs of one training sample: forward + backward = 3 x forward."""
  return 3 * 2 * forward_macs_per_sample(model_config, 'model')


def generate_flops_per_sample(model_config) -> float:
  """Model FLOPs to generate one sample of one sequence (= forward FLOPs per sample)."""
  return 2 * forward_macs_per_sample(model_config, 'model')


def executed_generate_flops_per_sample(model_config) -> float:
  """FLOPs this project executes per generated sample: the MLP conv as lookups.

  The per-call tables ``E W_k`` are built once per generated chunk and left out.
  """
  return 2 * forward_macs_per_sample(model_config, 'implemented')


def train_flops_per_step(model_config, batch_size: int, seq_len: int,
                         form: str = 'model', scan_bodies_once: bool = False) -> float:
  """FLOPs of one training step over ``batch_size`` windows of ``seq_len`` samples.

  ``form='implemented', scan_bodies_once=True`` is what XLA's cost analysis of this
  project's train step should report, up to elementwise work.
  """
  frame_sizes = tuple(int(f) for f in model_config.frame_sizes)
  samples = batch_size * seq_len
  macs = sample_mlp_macs(model_config, form) * samples
  if form == 'implemented':
    macs += tap_table_macs(model_config)
  for j, f in enumerate(frame_sizes):
    tier = frame_tier_macs(model_config, j, form)
    frames = samples // f
    macs += tier['rest'] * frames
    macs += tier['recurrent'] * (batch_size if scan_bodies_once else frames)
  return 3 * 2 * float(macs)
