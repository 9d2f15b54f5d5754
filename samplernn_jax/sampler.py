"""Autoregressive generation: the whole sample loop inside one ``jax.jit``.

A compiled chunk is a ``lax.scan`` over top-tier frames; inside each, a scan over the
frames of the tier below, and so on down to a scan over single samples. No value goes
back to the host until a chunk of ``chunk_size`` samples is done, and the carry (every
tier's RNN state, the last big frame of samples, the log-likelihood so far) is threaded
from chunk to chunk, so one compiled function makes any length.

The scans run the model's one-frame form: ``SampleRNN.fold`` (once per checkpoint:
``Sampler.fold``) and each tier's ``step``; ``model.py`` says what is folded and why.

Sampling is PRiSM's: ``categorical(log_softmax(logits) / temperature)``, with one
temperature per sequence, as ``argmax(logits + temperature * gumbel)``. The noise of
the lowest tier frame starting at absolute sample ``p`` comes from ``fold_in(rng, p)``,
so the output does not depend on how a run is cut into chunks.

With a ``silence_guard.Guard`` the top-tier loop also watches each sequence's level after
every frame and re-primes the frame tiers of a sequence that has stayed silent too long
(``silence_guard`` says how and why); without one the program is the same as before it.
"""

import functools
import time
from typing import Any, Callable, NamedTuple, Optional, Sequence

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from samplernn_jax import backend
from samplernn_jax import default_config
from samplernn_jax import model as model_lib
from samplernn_jax import quantization
from samplernn_jax import silence_guard

# Samples per compiled call when none is given: config.generate.chunk_size's default.
DEFAULT_CHUNK_SIZE = default_config.get_config().generate.chunk_size


class Spec(NamedTuple):
  """The compile cache key: the model and the loop shapes (``backend.sampler_options``)."""

  model: model_lib.SampleRNN
  sample_unroll: int  # Per-sample loop steps per scan iteration.
  frame_unroll: int  # Frame loop steps per scan iteration.
  fold_upper_upsampling: bool  # See ``SampleRNN.fold``.
  guard: Optional[silence_guard.Guard] = None  # The silence guard; None: off.


@flax.struct.dataclass
class GenerationState:
  """What one chunk hands the next."""

  rnn_carry: tuple  # One entry per frame tier, as ``SampleRNN.initial_carry``.
  history_BxS: jax.Array  # int32: the last big frame of samples (S = big_frame_size).
  log_likelihood_B: jax.Array  # Sum of log p(x_t | x_<t) over the generated samples (nats).
  position: jax.Array  # int32 scalar: samples generated so far.
  guard: Optional[silence_guard.GuardState] = None  # With the silence guard only.


# ---------------------------------------------------------------------------------------
# The nested scans
# ---------------------------------------------------------------------------------------


def _sample_frame(spec: Spec, folded_mlp, window_BxF, ll_B, hidden1_FxBxD, choose_xs, choose):
  """The samples of one lowest-tier frame, one at a time: ``(ll, samples_BxF, logits_BxFxQ)``.

  ``choose(logits_BxQ, x)`` picks each next sample from its scan input ``x``. The
  log-likelihood of the chosen samples is added to ``ll_B`` once per frame, outside the
  per-sample loop.
  """
  mlp = spec.model.step_modules()[1]

  def step(window, xs):
    hidden1_BxD, x = xs
    logits_BxQ = mlp.step(folded_mlp, window, hidden1_BxD)
    sample_B = choose(logits_BxQ, x)
    window = jnp.concatenate([window[:, 1:], sample_B[:, None]], axis=1)
    return window, (sample_B, logits_BxQ)

  _, (samples_FxB, logits_FxBxQ) = jax.lax.scan(
    step, window_BxF, (hidden1_FxBxD, choose_xs), unroll=spec.sample_unroll
  )
  log_probs = jax.nn.log_softmax(logits_FxBxQ, axis=-1)
  ll_B = ll_B + jnp.take_along_axis(log_probs, samples_FxB[..., None], axis=-1)[..., 0].sum(0)
  return ll_B, samples_FxB.T, jnp.swapaxes(logits_FxBxQ, 0, 1)


def _sampled(logits_BxQ, scaled_noise_BxQ):
  # categorical(log_softmax(l) / T) == argmax(l - logsumexp(l) + T * gumbel) for T > 0,
  # and the logsumexp is the same for every level.
  return jnp.argmax(logits_BxQ + scaled_noise_BxQ, axis=-1).astype(jnp.int32)


def _forced(logits_BxQ, sample_B):
  del logits_BxQ
  return sample_B


def _run_tier(
  folded,
  spec: Spec,
  j: int,
  cond_RxBxG,
  num_frames: int,
  context_BxC,
  carry,
  ll_B,
  position,
  frame_inputs: Callable,
  *,
  keep_logits: bool,
  after_frame: Optional[Callable] = None,
  after_frame_state=None,
):
  """Runs ``num_frames`` consecutive frames of tier ``j`` and every tier below.

  ``context_BxC`` ends with the samples just before the first frame (``C >= f_j``);
  ``cond_RxBxG`` is the folded conditioning from the tier above (None for the top tier).
  ``frame_inputs(p)`` gives the lowest-tier frame that starts at absolute sample ``p`` its
  per-sample scan inputs and their ``choose`` (see ``_sample_frame``). Returns ``(carry, ll,
  samples_Bx(num_frames*f_j), logits_Bx(num_frames*f_j)xQ if keep_logits else None,
  (context_Bxf, after_frame_state, after_frame outputs))``.

  ``after_frame(carry, frame_Bxf, after_frame_state)`` (the top tier's silence guard), run
  after each frame, returns ``(carry, context_Bxf, after_frame_state, output)``: the carry and
  context the next frame starts from, and what to stack per frame. None leaves the loop as it
  is without one.
  """
  tier = spec.model.step_modules()[0][j]
  f, ratio = tier.frame_size, tier.upsample_ratio
  batch = context_BxC.shape[0]

  def frame_step(c, xs):
    carry, context_Bxf, ll, hook_state = c
    cond, r = xs
    frame_position = position + r * f
    tier_carry, out = tier.step(folded['frame_tiers'][j], context_Bxf, cond, carry[j])
    carry = carry[:j] + (tier_carry,) + carry[j + 1 :]
    out_RxBxG = jnp.swapaxes(out.reshape(batch, ratio, -1), 0, 1)
    if j == 0:
      ll, new_Bxf, logits = _sample_frame(
        spec, folded['sample_mlp'], context_Bxf, ll, out_RxBxG, *frame_inputs(frame_position)
      )
      logits = logits if keep_logits else None
    else:
      carry, ll, new_Bxf, logits, _ = _run_tier(
        folded,
        spec,
        j - 1,
        out_RxBxG,
        ratio,
        context_Bxf,
        carry,
        ll,
        frame_position,
        frame_inputs,
        keep_logits=keep_logits,
      )
    next_context, hook_output = new_Bxf, None
    if after_frame is not None:
      carry, next_context, hook_state, hook_output = after_frame(carry, new_Bxf, hook_state)
    return (carry, next_context, ll, hook_state), (new_Bxf, logits, hook_output)

  (carry, context, ll_B, hook_state), (new_RxBxf, logits, hook_outputs) = jax.lax.scan(
    frame_step,
    (carry, context_BxC[:, -f:], ll_B, after_frame_state),
    (cond_RxBxG, jnp.arange(num_frames, dtype=jnp.int32)),
    unroll=min(num_frames, spec.frame_unroll),
  )
  samples = jnp.swapaxes(new_RxBxf, 0, 1).reshape(batch, num_frames * f)
  if logits is not None:
    logits = jnp.swapaxes(logits, 0, 1).reshape(batch, num_frames * f, -1)
  return carry, ll_B, samples, logits, (context, hook_state, hook_outputs)


def _guard_step(spec: Spec, params, carry, frame_BxS, guard_state):
  """The silence guard after one top frame (``silence_guard``): ``(carry, context, state,
  revived_B)``, ``revived_B`` int8: 0, or how the sequence was revived (``REPRIMED``,
  ``RESTARTED``). A revival re-primes the frame tiers of the sequences that are due, from their
  initial state, on their last sounding stretch; the frame loop continues after it."""
  model, guard = spec.model, spec.guard
  rms_B = silence_guard.frame_rms(guard, frame_BxS, model.q_levels)
  guard_state, due_B = silence_guard.observe(guard, guard_state, frame_BxS, rms_B)

  enough_B = silence_guard.has_sounded_enough(guard, guard_state)

  def revive(current):
    x_BxL = silence_guard.priming_stretch(guard, guard_state)
    variables = {'params': params}
    fresh = model.apply(variables, x_BxL.shape[0], method=model_lib.SampleRNN.initial_carry)
    primed = model.apply(variables, x_BxL, fresh, method=model_lib.SampleRNN.frame_tiers_forward)[0]
    primed = silence_guard.select(enough_B, primed, fresh)
    return silence_guard.select(due_B, (primed, x_BxL[:, -frame_BxS.shape[1] :]), current)

  # A conditional, so the priming costs nothing in the frames where no sequence is due.
  carry, context = jax.lax.cond(due_B.any(), revive, lambda current: current, (carry, frame_BxS))
  how = jnp.where(enough_B, silence_guard.REPRIMED, silence_guard.RESTARTED)
  return carry, context, guard_state, jnp.where(due_B, how, 0).astype(jnp.int8)


def _run(
  folded,
  spec: Spec,
  state: GenerationState,
  num_samples: int,
  frame_inputs: Callable,
  *,
  keep_logits: bool = False,
  params=None,
):
  """``num_samples`` (whole big frames) after ``state``: ``(state, samples_BxT, logits,
  revived_BxN)``; ``revived_BxN`` (one column per top frame: the guard revived the sequence
  after it) is None without the guard, which needs ``params``."""
  big = spec.model.big_frame_size
  guard = None
  if spec.guard is not None:
    guard = functools.partial(_guard_step, spec, params)
  carry, ll, samples, logits, (context, guard_state, revived_NxB) = _run_tier(
    folded,
    spec,
    len(spec.model.frame_sizes) - 1,
    None,
    num_samples // big,
    state.history_BxS,
    state.rnn_carry,
    state.log_likelihood_B,
    state.position,
    frame_inputs,
    keep_logits=keep_logits,
    after_frame=guard,
    after_frame_state=state.guard,
  )
  state = GenerationState(
    rnn_carry=carry,
    # The last frame's context: its samples, unless the guard revived the sequence after it.
    history_BxS=samples[:, -big:] if guard is None else context,
    log_likelihood_B=ll,
    position=state.position + num_samples,
    guard=guard_state,
  )
  return state, samples, logits, None if guard is None else revived_NxB.T


@functools.partial(jax.jit, static_argnames=('spec', 'num_samples'), donate_argnames='state')
def _generate_chunk(
  folded, state: GenerationState, temperatures_B, rng, spec: Spec, num_samples: int, params=None
):
  """``num_samples`` (a multiple of the big frame) new samples: ``(state, samples_BxT,
  revived_BxN or None)``; ``params`` only with the silence guard."""
  shape = (spec.model.frame_sizes[0], temperatures_B.shape[0], spec.model.q_levels)
  temperatures_B = temperatures_B.astype(jnp.float32)

  def noise(position):
    gumbel = jax.random.gumbel(jax.random.fold_in(rng, position), shape)
    return gumbel * temperatures_B[None, :, None], _sampled

  state, samples, _, revived = _run(folded, spec, state, num_samples, noise, params=params)
  return state, samples, revived


@functools.partial(jax.jit, static_argnames='spec')
def _teacher_forced(folded, state: GenerationState, levels_BxT, spec: Spec):
  f0 = spec.model.frame_sizes[0]

  def given(position):
    start = position - state.position
    return jax.lax.dynamic_slice_in_dim(levels_BxT, start, f0, axis=1).T, _forced

  _, _, logits, _ = _run(folded, spec, state, levels_BxT.shape[1], given, keep_logits=True)
  return logits


@functools.partial(jax.jit, static_argnames='spec')
def _fold(params, spec: Spec):
  return spec.model.fold(params, fold_upper_upsampling=spec.fold_upper_upsampling)


@functools.partial(jax.jit, static_argnames='model')
def _prime_window(params, x_BxL, carry, model):
  # The frame tiers only (no sample MLP): the carry after the window.
  return model.apply(
    {'params': params}, x_BxL, carry, method=model_lib.SampleRNN.frame_tiers_forward
  )[0]


@functools.partial(jax.jit, static_argnames=('model', 'batch_size'))
def _initial_carry(params, model, batch_size):
  return model.apply({'params': params}, batch_size, method=model_lib.SampleRNN.initial_carry)


# ---------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------


class Sampler:
  """Generates batches of sequences from any checkpoint of one model config.

  ``Sampler(model_config, batch_size, chunk_size)`` compiles (lazily, once per chunk
  length) a function that takes the parameters as an argument, so new checkpoints reuse
  it. ``generate`` returns int32 levels; decode them with ``quantization.decode``.
  """

  # Frames primed per parallel window: bounds the seed's activation memory.
  PRIME_WINDOW_FRAMES = 256

  def __init__(
    self,
    model_config: ml_collections.ConfigDict,
    batch_size: int,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    dtype: Optional[str] = None,
    guard: Optional[silence_guard.Guard] = None,
    **options,
  ):
    """``dtype``: the matmul dtype; default: ``model_config.dtype`` as this backend runs it
    fastest at this batch size (``backend.generation_dtype``). ``guard``: the silence guard
    (``silence_guard.from_config``); None: off. ``options``: ``Spec`` fields that change
    speed, not results (default: the backend's)."""
    loops = backend.sampler_options()
    spec = dict(
      sample_unroll=loops['sample_unroll'],
      frame_unroll=loops['frame_unroll'],
      fold_upper_upsampling=batch_size > loops['unfolded_upper_max_batch'],
    )
    dtype = dtype or backend.generation_dtype(model_config.dtype, batch_size)
    model = model_lib.from_config(model_config).clone(dtype=model_lib.DTYPES[dtype])
    self.spec = Spec(model, **{**spec, **options}, guard=guard)
    self.model = self.spec.model
    self.batch_size = int(batch_size)
    if chunk_size < 1:
      raise ValueError(f'chunk_size={chunk_size} must be positive.')
    big = self.model.big_frame_size
    self.chunk_size = -(-int(chunk_size) // big) * big  # Rounded up to whole big frames.

  def fold(self, params):
    """The model's one-frame form of ``params`` (``SampleRNN.fold``), jitted."""
    return _fold(params, self.spec)

  def initial_state(self, params, seed_levels=None) -> GenerationState:
    """The state to generate from: silence, or every tier primed on the whole seed.

    ``seed_levels`` is int levels ``[T]`` (shared) or ``[B, T]``, ``T >= big_frame_size``.
    It is left-padded with silence to whole big frames; the tiers run over it in
    parallel (chained windows), and generation continues after its last sample.
    """
    big, batch = self.model.big_frame_size, self.batch_size
    silence = quantization.silence_level(self.model.q_levels)
    seed = np.full((batch, big), silence, np.int32)
    if seed_levels is not None:
      seed = np.asarray(seed_levels, np.int32)
      if seed.ndim == 1:
        seed = np.broadcast_to(seed, (batch, seed.shape[0]))
      if seed.shape[0] != batch or seed.shape[1] < big:
        raise ValueError(
          f'seed_levels has shape {seed.shape}; need [{batch}, T] or [T] with '
          f'T >= {big} (one top-tier frame).'
        )
      seed = np.concatenate([np.full((batch, -seed.shape[1] % big), silence, np.int32), seed], 1)
    carry = _initial_carry(params, self.model, batch)
    window = self.PRIME_WINDOW_FRAMES * big
    # Window i reads frames [i*W, (i+1)*W] (one frame of overlap, as training windows do).
    for start in range(0, seed.shape[1] - big, window):
      x = jnp.asarray(seed[:, start : min(start + window, seed.shape[1] - big) + big])
      carry = _prime_window(params, x, carry, self.model)
    guard = None
    if self.spec.guard is not None:
      guard = silence_guard.initial_state(self.spec.guard, seed, big, silence)
    return GenerationState(
      rnn_carry=carry,
      history_BxS=jnp.asarray(seed[:, -big:]),
      log_likelihood_B=jnp.zeros((batch,), jnp.float32),
      position=jnp.zeros((), jnp.int32),
      guard=guard,
    )

  def generate(
    self,
    params,
    num_samples: int,
    temperatures: Sequence[float],
    rng,
    *,
    seed_levels=None,
    callback: Optional[Callable[[np.ndarray, int], Any]] = None,
    folded=None,
    return_log_likelihood: bool = False,
    on_revival: Optional[Callable[[int, int, int], Any]] = None,
    keep_output: bool = True,
    on_speed: Optional[Callable[[float], Any]] = None,
  ):
    """``batch_size`` sequences of ``num_samples`` new levels: int32 ``[B, num_samples]``.

    Args:
      params: the model parameters (``restore_params``' tree).
      num_samples: samples per sequence (after the seed).
      temperatures: one per sequence (``batch_size`` values), each > 0.
      rng: a JAX key, or an int seed.
      seed_levels: optional int levels ``[T]`` or ``[B, T]`` to prime every tier on.
      callback: called as ``callback(levels_BxC, start)`` with each finished chunk
        (trimmed to ``num_samples``) while the next chunk is already running.
      folded: ``self.fold(params)`` if already computed (saves the folding matmuls).
      return_log_likelihood: also return each sequence's mean log p(x_t | x_<t) (nats).
      on_revival: with the silence guard, called as ``on_revival(sequence, sample, how)`` for
        each revival, ``sample`` being where the revived audio starts in the output and
        ``how`` ``silence_guard.REPRIMED`` or ``RESTARTED``.
      keep_output: False returns None for the levels: a ``callback`` that writes each chunk
        away keeps host memory flat however long the sequences are.
      on_speed: called once, early, with the measured samples per second per sequence: a
        long run starts with two short probe chunks (the second timed once compiled), so
        how long the whole will take is known in seconds. Chunk lengths do not change the
        output.
    """
    if num_samples < 1:
      raise ValueError(f'num_samples={num_samples} must be positive.')
    temps = np.asarray(temperatures, np.float32).reshape(-1)
    if temps.shape[0] != self.batch_size:
      raise ValueError(f'{temps.shape[0]} temperatures for batch_size={self.batch_size}.')
    if not np.all(temps > 0):
      raise ValueError(f'temperatures must be positive, got {temps.tolist()}.')
    if isinstance(rng, (int, np.integer)):
      rng = jax.random.key(int(rng))
    folded = self.fold(params) if folded is None else folded
    state = self.initial_state(params, seed_levels)
    temps = jnp.asarray(temps)
    out = np.empty((self.batch_size, num_samples), np.int32) if keep_output else None
    params_for_guard = params if self.spec.guard is not None else None
    done, pending = 0, None
    for length, timed in self._chunk_lengths(num_samples, probe=on_speed is not None):
      if timed:  # Time this chunk alone: the one before may still be running.
        jax.block_until_ready(state)
        start = time.perf_counter()
      state, samples, revived = _generate_chunk(
        folded, state, temps, rng, self.spec, length, params_for_guard
      )
      if pending is not None:  # Copy out the previous chunk while this one runs.
        done = self._deliver(pending, num_samples, out, done, callback, on_revival)
      pending = samples, revived
      if timed:
        samples.block_until_ready()
        on_speed(length / (time.perf_counter() - start))
    done = self._deliver(pending, num_samples, out, done, callback, on_revival)
    if return_log_likelihood:
      return out, np.asarray(state.log_likelihood_B) / max(1, state.position.item())
    return out

  # A probe chunk is this fraction of chunk_size (whole big frames).
  PROBE_FRACTION = 16

  def _chunk_lengths(self, num_samples: int, *, probe: bool):
    """``(length, timed)`` per chunk, covering ``num_samples`` in whole big frames.

    Equal chunks of at most ``chunk_size``; with ``probe``, when the run is long enough, two
    short ones first, the second ``timed``.
    """
    big = self.model.big_frame_size
    short = max(big, self.chunk_size // self.PROBE_FRACTION // big * big)
    if probe and num_samples > 2 * short + self.chunk_size:
      yield short, False
      yield short, True
      num_samples -= 2 * short
    num_chunks = -(-num_samples // self.chunk_size)
    length = -(-num_samples // num_chunks // big) * big
    for _ in range(num_chunks):
      yield length, False

  def _deliver(self, pending, num_samples, out, done, callback, on_revival):
    samples, revived = pending
    chunk = np.asarray(samples)[:, : num_samples - done]
    if out is not None:
      out[:, done : done + chunk.shape[1]] = chunk
    if revived is not None and on_revival is not None:
      big = self.model.big_frame_size
      revived = np.asarray(revived)
      for sequence, frame in zip(*np.nonzero(revived)):
        start = done + (int(frame) + 1) * big  # The revived audio starts with the next frame.
        if start < num_samples:
          on_revival(int(sequence), start, int(revived[sequence, frame]))
    if callback is not None:
      callback(chunk, done)
    return done + chunk.shape[1]

  def teacher_force(self, params, levels_BxL):
    """Logits ``[B, L - S, Q]`` of the step functions fed ``levels_BxL`` (S = big frame).

    The first big frame is the history; the same numbers as ``SampleRNN.__call__`` on the
    window from the initial carry. For tests of the step functions.
    """
    levels = jnp.asarray(levels_BxL, jnp.int32)
    big = self.model.big_frame_size
    state = self.initial_state(params).replace(history_BxS=levels[:, :big], guard=None)
    spec = self.spec._replace(guard=None)  # The guard acts on sampled output only.
    return _teacher_forced(self.fold(params), state, levels[:, big:], spec)


def generate(
  params,
  model_config: ml_collections.ConfigDict,
  num_samples: int,
  temperatures: Sequence[float],
  rng,
  seed_levels=None,
  chunk_size: int = DEFAULT_CHUNK_SIZE,
  callback: Optional[Callable[[np.ndarray, int], Any]] = None,
  guard: Optional[silence_guard.Guard] = None,
  on_revival: Optional[Callable[[int, int, int], Any]] = None,
) -> np.ndarray:
  """``len(temperatures)`` sequences of ``num_samples`` int32 levels (see ``Sampler``)."""
  sampler = Sampler(model_config, len(temperatures), chunk_size, guard=guard)
  return sampler.generate(
    params,
    num_samples,
    temperatures,
    rng,
    seed_levels=seed_levels,
    callback=callback,
    on_revival=on_revival,
  )
