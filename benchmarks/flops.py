r"""Model FLOPs of SampleRNN per audio sample, from a formula; and what a train step executes.

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
is a ratio of throughput. This project folds the embedding, the Conv1D and ``hidden1``
into ``f_0`` lookup tables ``E W_k W_1`` and the lowest tier's upsampling into ``U_k W_1``,
built once per train step or generated chunk (``f_0 Q^2 D + f_0 Q D^2 + f_0 D^3`` MACs per
call, not per sample), and feeds PRiSM's doubled skip input through summed kernels;
``form='implemented'`` counts that instead: the *executed* FLOPs, which are what can be
set against the machine's matmul peak (model FLOP/s can exceed it: the folds skip
``f_0 Q D + D^2`` MACs per sample), and what the compiled step is checked against.

The wavefront form of the stacked RNNs (``model.rnn_form='wavefront'``, see
``samplernn_jax/wavefront.py``) runs ``T + L - 1`` scan steps for a window of ``T`` frames, every
layer on every step: on its ``L - 1`` ramp steps a layer computes and discards. It also projects
the inputs of layers ``1..L-1`` inside the loop. So with ``rnn_form='wavefront'`` the executed
count (``form='implemented'``) takes the recurrent products and those layers' input projections
``(T + L - 1) / T`` times, in the forward, input-gradient and weight-gradient passes alike: 5% more
at 64 frames, 19% at 16, with 4 layers. The model count does not change with the form.

``benchmarks.hlo.matmul_flops`` counts the compiled program's matmuls, loop bodies times their
trip counts; ``train_flops_per_step(..., form='implemented', rnn_form=...)`` is what it should
find (tested). XLA's own cost analysis counts a ``while`` body once, so it cannot be compared
with either (``benchmarks/PERF.md``, "Depth").
"""

from typing import Dict

import ml_collections

_GATES = {'gru': 3, 'lstm': 4}


def _dims(model_config: ml_collections.ConfigDict):
  m = model_config
  frame_sizes = tuple(int(f) for f in m.frame_sizes)
  return (
    frame_sizes,
    int(m.dim),
    int(m.q_levels),
    int(m.num_rnn_layers),
    _GATES[m.rnn_type],
    bool(m.skip_conn),
  )


def frame_tier_macs(model_config, j: int, form: str = 'model') -> Dict[str, int]:
  """MACs of frame tier ``j`` for one frame: ``recurrent`` (every layer's ``h @ W_hh``),
  ``upper_inputs`` (the input kernels of layers ``1..L-1``) and the ``rest``."""
  frame_sizes, d, _, layers, gates, skip = _dims(model_config)
  f = frame_sizes[j]
  ratio = f // (frame_sizes[j - 1] if j > 0 else 1)
  layer0_in = 2 * d if (skip and form == 'model') else d
  recurrent = layers * gates * d * d
  upper_inputs = (layers - 1) * gates * d * d
  rest = f * d + gates * d * layer0_in + (layers * d * d if skip else 0) + ratio * d * d
  return {'recurrent': recurrent, 'upper_inputs': upper_inputs, 'rest': rest}


def sample_mlp_macs(model_config, form: str = 'model') -> int:
  """MACs of the sample-level MLP per sample.

  ``form='implemented'``: the conv and ``hidden1`` are folded into the lookup tables and the
  lowest tier's upsampling (both in training and in the sampler), so only ``hidden2`` and
  the output layer remain per sample.
  """
  frame_sizes, d, q, _, _, _ = _dims(model_config)
  if form == 'implemented':
    return d * d + d * q
  return frame_sizes[0] * q * d + 2 * d * d + d * q


def tap_table_macs(model_config) -> int:
  """MACs of this project's per-call folds: tables ``E W_k W_1`` and upsampling ``U_k W_1``.

  ``f_0 Q^2 D`` (``E W_k``) + ``f_0 Q D^2`` (``.. W_1``) + ``f_0 D^3`` (``U_k W_1``).
  """
  frame_sizes, d, q, _, _, _ = _dims(model_config)
  f0 = frame_sizes[0]
  return f0 * q * q * d + f0 * q * d * d + f0 * d * d * d


def forward_macs_per_sample(model_config, form: str = 'model') -> float:
  """Forward MACs per predicted sample (tables, if counted, are per call: excluded)."""
  frame_sizes = tuple(int(f) for f in model_config.frame_sizes)
  total = float(sample_mlp_macs(model_config, form))
  for j, f in enumerate(frame_sizes):
    total += sum(frame_tier_macs(model_config, j, form).values()) / f
  return total


def train_flops_per_sample(model_config) -> float:
  """Model FLOPs of one training sample: forward + backward = 3 x forward."""
  return 3 * 2 * forward_macs_per_sample(model_config, 'model')


def generate_flops_per_sample(model_config) -> float:
  """Model FLOPs to generate one sample of one sequence (= forward FLOPs per sample)."""
  return 2 * forward_macs_per_sample(model_config, 'model')


def executed_generate_flops_per_sample(
  model_config, *, fold_upper_upsampling: bool = True
) -> float:
  """FLOPs the sampler executes per generated sample of one sequence (its folded form).

  The folds (``samplernn_jax/sampler.py``) are made once, when weights are loaded, and
  left out. Per frame of tier ``j``: ``f_j G`` (input projection folded into layer 0's
  ``W_ih``) + ``(2L - 1) G D^2`` (layer 0's input comes folded from the tier above) +
  ``s L D^2`` + the upsampling: ``R_0 D^2`` for the lowest tier (``U_k W_1``), ``R_j D G``
  for an upper one (``U_k W_ih``), plus ``R_j D^2`` when that is left unfolded (small
  batches). Per sample: ``D^2 + D Q`` (``hidden2`` and the output layer).
  """
  frame_sizes, d, q, layers, gates, skip = _dims(model_config)
  total = float(d * d + d * q)
  for j, f in enumerate(frame_sizes):
    ratio = f // (frame_sizes[j - 1] if j > 0 else 1)
    g = gates * d
    macs = f * g + (2 * layers - 1) * g * d + (layers * d * d if skip else 0)
    if j == 0:
      macs += ratio * d * d
    else:
      macs += ratio * d * g + (0 if fold_upper_upsampling else ratio * d * d)
    total += macs / f
  return 2 * total


def train_flops_per_step(
  model_config, batch_size: int, seq_len: int, *, form: str = 'model', rnn_form: str = 'layered'
) -> float:
  """FLOPs of one training step over ``batch_size`` windows of ``seq_len`` samples.

  ``form='implemented'`` with the step's ``rnn_form`` (``'layered'`` or ``'wavefront'``, not
  ``'auto'``) is what ``benchmarks.hlo.matmul_flops`` of the compiled step counts, up to
  rounding; the model count (``form='model'``) ignores ``rnn_form``.
  """
  if rnn_form not in ('layered', 'wavefront'):
    raise ValueError(f"rnn_form={rnn_form!r}: resolve 'auto' first (backend.rnn_form).")
  frame_sizes, _, _, layers, _, _ = _dims(model_config)
  samples = batch_size * seq_len
  macs = sample_mlp_macs(model_config, form) * samples
  if form == 'implemented':
    macs += tap_table_macs(model_config)
  for j, f in enumerate(frame_sizes):
    tier = frame_tier_macs(model_config, j, form)
    frames = seq_len // f  # Per window; the scans run over them.
    looped = tier['recurrent'] + tier['upper_inputs']
    if form == 'implemented' and rnn_form == 'wavefront':
      looped *= (frames + layers - 1) / frames  # Its ramp: L - 1 steps more per window.
    macs += (tier['rest'] + looped) * frames * batch_size
  return 2 * float(3 * macs)
