"""The silence guard: a sequence that has fallen silent is revived inside the compiled loop.

A trained SampleRNN falls into silence because silence is an attractor: once the frame tiers
have seen a stretch of near-zero samples, the likeliest next sample is near zero again, and
nothing brings the sequence back. Lowering or raising the temperature does not help, since a
frame tier that has seen only silence conditions every tier below it.

The guard runs once per top-tier frame, inside the sampler's scan (no host round trip, nothing
per sample). It measures the frame's level (the RMS of its decoded samples), counts how long
each sequence has stayed below ``silence_dbfs``, and keeps the sequence's last ``prime_seconds``
of *sounding* frames in a ring. When a sequence has been silent for ``max_silence_seconds``, it
is *re-primed*: its frame tiers restart from the initial state and run over that last sounding
stretch (exactly as a seed primes them), and generation continues after it. The stretch ends
``BACKOFF_SECONDS`` before the sequence fell silent: the last sounding moments are the fall
into silence itself (a decay, or a frame that ends in silence), and a sequence primed on them
falls again. So the music picks up a moment before it last sounded, with fresh noise, and the
memory of the silence is gone. Only revived sequences change;
the others take the same values as without the guard.

``Guard`` holds the settings (static: they shape the compiled program); ``GuardState`` is
carried from frame to frame and chunk to chunk.
"""

import math
from typing import NamedTuple, Optional

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from samplernn_jax import quantization

# The score's silent level (``clip_score.SILENT_DBFS``): what counts as silence is the same for
# the guard and the curation that judges its clips.
DEFAULT_SILENCE_DBFS = -60.0
# The revived sequence is primed on this much of its own last sounding audio.
DEFAULT_PRIME_SECONDS = 2.0
# How far before the silence the re-priming stretch ends (see above).
BACKOFF_SECONDS = 0.5
# How a revival is recorded in a clip's sidecar, by the sampler's code for it (1, 2).
REPRIMED, RESTARTED = 1, 2
HOW = {
  REPRIMED: 're-primed on its last sounding {seconds:g} s',
  RESTARTED: 'restarted from the initial state (it had sounded less than {seconds:g} s)',
}


class Guard(NamedTuple):
  """The guard's settings in samples (hashable: part of the sampler's compile key)."""

  max_silent_samples: int  # Silence longer than this (a multiple of the top frame) revives.
  silence_rms: float  # Frame RMS (full scale 1.0) below which a top frame is silent.
  prime_samples: int  # Samples a revival primes on (a multiple of the top frame).
  backoff_samples: int  # Sounding samples left out at the end of the ring (as prime_samples).
  q_type: str  # How levels decode to amplitudes (``quantization``).

  def describe(self, sample_rate: int, how: int = REPRIMED) -> str:
    return HOW[how].format(seconds=self.prime_samples / sample_rate)


def check_seconds(max_silence_seconds: float) -> None:
  """Raises ValueError naming ``--max_silence`` unless it is 0 (off) or a positive number."""
  if not max_silence_seconds >= 0 or not math.isfinite(max_silence_seconds):
    raise ValueError(
      f'--max_silence={max_silence_seconds} must be 0 (off) or a positive number of seconds.'
    )


def from_seconds(
  max_silence_seconds: float,
  sample_rate: int,
  big_frame_size: int,
  q_type: str,
  *,
  silence_dbfs: float = DEFAULT_SILENCE_DBFS,
  prime_seconds: float = DEFAULT_PRIME_SECONDS,
) -> Optional[Guard]:
  """The guard for these settings, or None when ``max_silence_seconds`` is 0 (off).

  Lengths are rounded up to whole top-tier frames: the guard looks once per frame.
  """
  check_seconds(max_silence_seconds)
  if max_silence_seconds == 0:
    return None
  if not prime_seconds > 0:
    raise ValueError(f'config.generate.guard_prime_seconds={prime_seconds} must be positive.')

  def frames(seconds):
    return max(1, math.ceil(seconds * sample_rate / big_frame_size)) * big_frame_size

  return Guard(
    max_silent_samples=frames(max_silence_seconds),
    silence_rms=float(10.0 ** (silence_dbfs / 20.0)),
    prime_samples=frames(prime_seconds),
    backoff_samples=frames(BACKOFF_SECONDS),
    q_type=q_type,
  )


def from_config(
  config: ml_collections.ConfigDict, max_silence_seconds: Optional[float] = None
) -> Optional[Guard]:
  """The guard a run's ``config.generate`` asks for; ``max_silence_seconds`` overrides it."""
  g = config.generate
  if max_silence_seconds is None:
    max_silence_seconds = float(g.max_silence)
  return from_seconds(
    float(max_silence_seconds),
    int(config.data.sample_rate),
    int(config.model.frame_sizes[-1]),
    config.model.q_type,
    silence_dbfs=float(g.silence_dbfs),
    prime_seconds=float(g.guard_prime_seconds),
  )


@flax.struct.dataclass
class GuardState:
  silent_B: jax.Array  # int32: samples since the sequence's last sounding top frame.
  ring_BxNxS: jax.Array  # int32: its last N sounding top frames, a ring of frames.
  next_B: jax.Array  # int32: how many sounding frames it has written (next slot: mod N).


def initial_state(guard: Guard, history_BxL: np.ndarray, big: int, pad_level: int) -> GuardState:
  """Nothing silent yet; the ring holds the end of ``history_BxL`` (the seed, or silence),
  left-padded with ``pad_level``, as frames of ``big`` samples."""
  batch, length = history_BxL.shape
  size = guard.prime_samples + guard.backoff_samples
  pad = np.full((batch, max(0, size - length)), pad_level, np.int32)
  ring = np.concatenate([pad, np.asarray(history_BxL, np.int32)], axis=1)
  ring = ring[:, ring.shape[1] - size :]
  return GuardState(
    silent_B=jnp.zeros((batch,), jnp.int32),
    ring_BxNxS=jnp.asarray(ring.reshape(batch, -1, big)),
    next_B=jnp.zeros((batch,), jnp.int32),
  )


def frame_rms(guard: Guard, frame_BxS: jax.Array, q_levels: int) -> jax.Array:
  """The RMS of each sequence's decoded frame (full scale 1.0): float32 ``[B]``."""
  amplitude_Q = quantization.decode(np.arange(q_levels), guard.q_type, q_levels)
  amplitude_Q = jnp.asarray(np.asarray(amplitude_Q, np.float32))
  a = amplitude_Q[frame_BxS]
  return jnp.sqrt(jnp.mean(a * a, axis=1))


def observe(guard: Guard, state: GuardState, frame_BxS: jax.Array, rms_B: jax.Array):
  """After one top frame: ``(state, due_B)``, ``due_B`` True where the sequence must revive."""
  sounding_B = rms_B >= guard.silence_rms
  big = frame_BxS.shape[1]
  silent_B = jnp.where(sounding_B, 0, state.silent_B + big)
  num_slots = state.ring_BxNxS.shape[1]
  rows = jnp.arange(frame_BxS.shape[0])
  slot_B = state.next_B % num_slots
  old_BxS = state.ring_BxNxS[rows, slot_B]
  ring = state.ring_BxNxS.at[rows, slot_B].set(jnp.where(sounding_B[:, None], frame_BxS, old_BxS))
  next_B = state.next_B + sounding_B.astype(jnp.int32)
  due_B = silent_B >= guard.max_silent_samples
  return GuardState(silent_B=jnp.where(due_B, 0, silent_B), ring_BxNxS=ring, next_B=next_B), due_B


def priming_stretch(guard: Guard, state: GuardState) -> jax.Array:
  """What a revived sequence is primed on, in time order: int32 ``[B, prime_samples]``.

  Its last sounding samples but the final ``backoff_samples``, or the final half of what it
  has sounded when that is less (else a sequence that sounded briefly would be primed on the
  silence, or seed, that fills the ring before it).
  """
  batch, num_slots, big = state.ring_BxNxS.shape
  order_BxN = (_stretch_start(guard, state)[:, None] + jnp.arange(num_slots)[None, :]) % num_slots
  order_BxN = order_BxN[:, : guard.prime_samples // big]
  ordered = jnp.take_along_axis(state.ring_BxNxS, order_BxN[:, :, None], axis=1)
  return ordered.reshape(batch, guard.prime_samples)


def has_sounded_enough(guard: Guard, state: GuardState) -> jax.Array:
  """bool ``[B]``: the priming stretch is all the sequence's own sounding audio.

  Where it is not (a sequence that sounded less than ``prime_samples``, or never: one seeded
  with silence), priming on it would mostly prime on silence, the very attractor; such a
  sequence restarts from the initial state instead, as an unseeded one starts, from the end
  of its stretch.
  """
  return _stretch_start(guard, state) >= 0


def _stretch_start(guard: Guard, state: GuardState) -> jax.Array:
  """Each sequence's first priming frame, counted in sounding frames written (may be < 0)."""
  big = state.ring_BxNxS.shape[2]
  backoff_B = jnp.minimum(guard.backoff_samples // big, state.next_B // 2)
  return state.next_B - backoff_B - guard.prime_samples // big


def select(due_B: jax.Array, revived, current):
  """``revived`` where ``due_B``, else ``current``, leaf by leaf (the batch axis first)."""

  def pick(new, old):
    mask = due_B.reshape((-1,) + (1,) * (old.ndim - 1))
    return jnp.where(mask, new, old)

  return jax.tree.map(pick, revived, current)
