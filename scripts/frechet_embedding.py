"""A pretrained embedding's verdict on clips, the Frechet Audio Distance way (an experiment).

The embedding is basic-pitch's (Spotify's ICASSP 2022 note transcription network): its
weights ship inside the basic-pitch wheel as ``saved_models/icassp_2022/nmp.onnx`` (230 KB),
so nothing is downloaded at run time, and onnxruntime runs it without TensorFlow:

    pip download --no-deps basic-pitch==0.4.0 && unzip basic_pitch-0.4.0-*.whl
    pip install onnxruntime

A frame's embedding is the network's pitch-contour posteriorgram (264 bins, a third of a
semitone each, 86 frames/s), or with ``output='all'`` that and the note and onset ones.
A clip's score is minus the Frechet distance between the Gaussian of its frames and the
Gaussian of the reference audio's frames, as FAD compares two sets of audio (here the set
is one clip). Used by scripts/evaluate_curation_set.py.
"""

import os

import numpy as np
from scipy import linalg

from samplernn_jax import audio_io
from samplernn_jax import workdir as workdir_lib
from samplernn_jax.listening import clip_score

RATE = 22050  # basic-pitch's input rate.
WINDOW = 43844  # Samples per call: 2 s less one hop, as basic-pitch's inference.py cuts them.
OVERLAP = 30 * 256  # Samples of overlap; the first and last 15 frames of a window are dropped.
# The network's outputs, each float[batch, 172 frames, bins]: pitch contour (264 bins),
# note (88) and onset (88) posteriorgrams.
OUTPUTS = {
  'contour': ['StatefulPartitionedCall:0'],
  'all': ['StatefulPartitionedCall:0', 'StatefulPartitionedCall:1', 'StatefulPartitionedCall:2'],
}
MAX_REFERENCE_FILES = 64


def _session(onnx_path: str):
  import onnxruntime  # pylint: disable=g-import-not-at-top  (only this experiment needs it)

  options = onnxruntime.SessionOptions()
  options.intra_op_num_threads = 1  # Beside a training run on two cores.
  return onnxruntime.InferenceSession(onnx_path, options, providers=['CPUExecutionProvider'])


def embed(audio_N: np.ndarray, sample_rate: int, session, output: str = 'contour') -> np.ndarray:
  """float32[frames, bins]: the ``output`` posteriorgrams (OUTPUTS) of mono audio in [-1, 1]."""
  audio_N = audio_io.resample(np.asarray(audio_N, np.float32), sample_rate, RATE)
  audio_N = np.pad(audio_N, (OVERLAP // 2, 0))
  hop = WINDOW - OVERLAP
  starts = range(0, max(1, audio_N.shape[0] - OVERLAP), hop)
  windows_BxW = np.stack(
    [np.pad(audio_N[s : s + WINDOW], (0, max(0, s + WINDOW - audio_N.shape[0]))) for s in starts]
  )
  name = session.get_inputs()[0].name
  outputs = session.run(OUTPUTS[output], {name: windows_BxW[:, :, None].astype(np.float32)})
  keep = np.concatenate(outputs, axis=-1)[:, 15:-15]  # Drop the overlaps as basic-pitch does.
  return keep.reshape(-1, keep.shape[-1])


def gaussian(frames_TxD: np.ndarray) -> tuple:
  return frames_TxD.mean(0), np.cov(frames_TxD, rowvar=False)


def frechet(a: tuple, b: tuple) -> float:
  """The Frechet distance between Gaussians ``(mean, covariance)``."""
  (mu_a, cov_a), (mu_b, cov_b) = a, b
  root, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * np.real(root)))


def reference_gaussian(reference: str, session, output: str) -> tuple:
  """The Gaussian of the frames of up to MAX_REFERENCE_FILES of the reference's audio."""
  demo = os.path.join(reference, workdir_lib.DEMO_CORPUS)
  found = clip_score.audio_files([demo if os.path.isdir(demo) else reference])
  found = [
    found[int(i)] for i in np.linspace(0, len(found) - 1, min(len(found), MAX_REFERENCE_FILES))
  ]
  frames = []
  for path in found:
    samples_NxC, rate = audio_io.read_audio(path)
    frames.append(embed(audio_io.to_mono(samples_NxC), rate, session, output))
  return gaussian(np.concatenate(frames))


def scores(paths: list, reference: str, onnx_path: str, output: str = 'contour') -> list:
  """Minus each clip's Frechet distance to the reference audio (higher is better)."""
  session = _session(onnx_path)
  ref = reference_gaussian(reference, session, output)
  out = []
  for path in paths:
    samples_NxC, rate = audio_io.read_audio(path)
    frames_TxD = embed(audio_io.to_mono(samples_NxC), rate, session, output)
    out.append(-frechet(gaussian(frames_TxD), ref))
  return out
