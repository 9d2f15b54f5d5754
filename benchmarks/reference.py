"""The TF2 reference, PRiSM SampleRNN, driven on the same shapes as this project.

PRiSM is imported from a checkout given by ``--prism_dir`` (never vendored here) and needs
TensorFlow with tf_keras (``pip install -e '.[reference]'``). Everything is measured the
way PRiSM itself runs it:

* training: ``model.train_step((x, y))``, its ``tf.function`` with GradientTape, global
  norm clip 5.0 and ``Adam(1e-3, epsilon=1e-4)`` set by ``model.compile`` as in train.py;
* generation: one Python-level ``model(frame, training=False, temperature=...)`` call per
  big frame, feeding each call's output to the next, as generate.py does;
* input pipeline: dataset.py's ``get_dataset`` (tf.data over ``load_audio``).

PRiSM models have exactly three tiers (two frame sizes); other configs are not comparable.

The benchmark suite drives PRiSM through ``RemotePrism``: the same classes, run in a
process of their own (``python -m benchmarks.reference --serve=PRISM_DIR``) so that
TensorFlow's thread pools, which keep spinning for a while after each op, and its memory
allocator never share a process with JAX. (Run in one process, this project's generation
measured about 5% slower right after PRiSM's than before TensorFlow was imported.)
"""

import contextlib
import importlib.metadata
import importlib.util
import io
import json
import os
import subprocess
import sys
import time
import types
from typing import Any, Dict, Optional

import numpy as np

INSTALL_HINT = (
  "To measure the TF2 reference as well: pip install -e '.[reference]' (TensorFlow + "
  'tf_keras), git clone https://github.com/rncm-prism/prism-samplernn (commit f05a772) '
  'outside this repository, and pass --prism_dir=PATH_TO_THAT_CHECKOUT.'
)


def tensorflow_build(tf) -> Dict[str, object]:
  """Which TensorFlow ``tf`` is: version, the distribution(s) installed as ``tensorflow``,
  and whether it is a CUDA build.

  ``tensorflow`` (what the ``reference`` extra installs; tf-keras requires it) is a CUDA
  build on Linux x86-64 and runs on a GPU once ``tensorflow[and-cuda]`` brings the CUDA
  libraries; ``tensorflow-cpu`` is not. Two distributions listed means two wheels were
  installed over each other into one ``tensorflow`` folder: the last one won.
  """
  dists = importlib.metadata.packages_distributions().get('tensorflow', [])
  return {
    'tensorflow': tf.__version__,
    'tensorflow_distribution': ', '.join(
      f'{d} {importlib.metadata.version(d)}' for d in sorted(set(dists))
    )
    or 'unknown',
    'tensorflow_cuda_build': bool(tf.test.is_built_with_cuda()),
  }


class ReferenceUnavailable(RuntimeError):
  """TensorFlow or the PRiSM checkout is missing; the message says how to get them."""


def _stub_librosa():
  """PRiSM's samplernn/__init__ imports librosa only for ``librosa.load`` of wav files.

  librosa is a heavy dependency not otherwise needed, so when it is absent this registers
  a stand-in whose ``load(path, sr=None, mono=True)`` reads with soundfile, which is what
  librosa does for wav files at their own rate (no resampling), averaging channels.
  """
  if importlib.util.find_spec('librosa') is not None:
    return
  import soundfile  # pylint: disable=g-import-not-at-top

  def load(path, sr=None, mono=True):
    audio, rate = soundfile.read(path, dtype='float32', always_2d=True)
    if sr is not None and sr != rate:
      raise NotImplementedError('the benchmark librosa stand-in does not resample')
    return (audio.mean(axis=1) if mono else audio.T), rate

  stub = types.ModuleType('librosa')
  stub.load = load
  stub.__benchmark_stub__ = True
  sys.modules['librosa'] = stub


class Prism:
  """The imported PRiSM modules: ``SampleRNN`` and ``get_dataset``, plus TensorFlow."""

  def __init__(self, prism_dir: Optional[str]):
    if not prism_dir:
      raise ReferenceUnavailable('no --prism_dir given. ' + INSTALL_HINT)
    prism_dir = os.path.abspath(prism_dir)
    if not os.path.isfile(os.path.join(prism_dir, 'samplernn', 'model.py')):
      raise ReferenceUnavailable(
        f'{prism_dir} is not a PRiSM SampleRNN checkout (no samplernn/model.py). ' + INSTALL_HINT
      )
    # PRiSM is written against tf.keras 2; under Keras 3 this selects tf_keras.
    os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    try:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise ReferenceUnavailable('TensorFlow is not installed. ' + INSTALL_HINT) from None
    if not tf.keras.__name__.startswith('tf_keras') and int(tf.keras.__version__[0]) >= 3:
      raise ReferenceUnavailable(
        'TensorFlow was imported with Keras 3 before TF_USE_LEGACY_KERAS=1 was set, or '
        'tf_keras is missing; PRiSM needs Keras 2. ' + INSTALL_HINT
      )
    # On a GPU host TensorFlow would otherwise reserve the memory JAX has not taken.
    for gpu in tf.config.list_physical_devices('GPU'):
      try:
        tf.config.experimental.set_memory_growth(gpu, True)
      except RuntimeError:  # Already initialized by an earlier import: keep its setting.
        pass
    _stub_librosa()
    if prism_dir not in sys.path:
      sys.path.insert(0, prism_dir)
    from samplernn.model import SampleRNN  # pylint: disable=g-import-not-at-top

    spec = importlib.util.spec_from_file_location(
      'prism_dataset', os.path.join(prism_dir, 'dataset.py')
    )
    dataset = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dataset)
    self.tf = tf
    self.SampleRNN = SampleRNN  # pylint: disable=invalid-name
    self.dataset = dataset
    self.dir = prism_dir
    self.commit = _git_head(prism_dir)
    self.librosa_stubbed = getattr(sys.modules.get('librosa'), '__benchmark_stub__', False)

  def info(self) -> Dict[str, object]:
    import tf_keras  # pylint: disable=g-import-not-at-top

    # On a GPU host PRiSM runs on the CPU unless TensorFlow has a GPU (a CUDA build with the
    # CUDA libraries), and the ratios must say so.
    on_gpu = bool(self.tf.config.list_physical_devices('GPU'))
    return {
      'prism_dir': self.dir,
      'prism_commit': self.commit,
      **tensorflow_build(self.tf),
      'tf_keras': tf_keras.__version__,
      'tensorflow_device': 'GPU' if on_gpu else 'CPU',
      'librosa_stubbed_with_soundfile': self.librosa_stubbed,
    }

  def build(self, config, batch_size: int):
    """PRiSM's ``SampleRNN`` for ``config`` (as train.py's ``create_model``)."""
    m = config.model
    if len(m.frame_sizes) != 2:
      raise ValueError(
        f'PRiSM has exactly 3 tiers; frame_sizes={tuple(m.frame_sizes)} '
        'has no reference counterpart.'
      )
    if m.get('learn_h0', False):
      raise ValueError('PRiSM has no learned initial state (learn_h0).')
    return self.SampleRNN(
      batch_size=batch_size,
      frame_sizes=list(m.frame_sizes),
      q_levels=m.q_levels,
      q_type=m.q_type,
      dim=m.dim,
      rnn_type=m.rnn_type,
      num_rnn_layers=m.num_rnn_layers,
      seq_len=config.data.seq_len,
      emb_size=m.emb_size,
      skip_conn=m.skip_conn,
      rnn_dropout=m.rnn_dropout,
    )


def supports(config) -> Optional[str]:
  """None when PRiSM can run ``config``, else why not."""
  if len(config.model.frame_sizes) != 2:
    return f'PRiSM is 3-tier only; frame_sizes={tuple(config.model.frame_sizes)}'
  if config.model.get('learn_h0', False):
    return 'PRiSM has no learn_h0'
  return None


class Trainer:
  """PRiSM's train step on a fixed random batch of ``[B, seq_len + big_frame]`` levels."""

  def __init__(self, prism: Prism, config):
    tf = prism.tf
    self.samples_per_step = config.train.batch_size * config.data.seq_len
    self.model = prism.build(config, config.train.batch_size)
    # train.py: create_adam_optimizer and model.compile.
    self.model.compile(
      optimizer=tf.keras.optimizers.Adam(learning_rate=config.train.learning_rate, epsilon=1e-4),
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name='accuracy')],
    )
    big = int(config.model.frame_sizes[-1])
    rng = np.random.default_rng(0)
    x = rng.integers(
      0, config.model.q_levels, (config.train.batch_size, config.data.seq_len + big, 1)
    ).astype(np.int32)
    self.data = (tf.constant(x), tf.constant(x[:, big:]))
    start = time.perf_counter()
    self._step()  # Traces the tf.function and builds the variables.
    self.compile_sec = time.perf_counter() - start

  def _step(self):
    logs = self.model.train_step(self.data)
    return float(logs['loss'].numpy()) if 'loss' in logs else logs

  def measure(self, num_steps: int) -> Dict[str, float]:
    times = []
    for _ in range(num_steps):
      start = time.perf_counter()
      self._step()
      times.append(time.perf_counter() - start)
    sec = float(np.median(times))
    return {
      'sec_per_step': sec,
      'samples_per_sec': self.samples_per_step / sec,
      'step_times': times,
    }


class Generator:
  """generate.py's loop: one ``inference_step`` call per big frame, batch of sequences."""

  def __init__(self, prism: Prism, config, batch_size: int, temperature: float = 0.95):
    tf = prism.tf
    self.tf = tf
    self.batch_size = batch_size
    self.big = int(config.model.frame_sizes[-1])
    self.model = prism.build(config, batch_size)
    # generate.py's create_inference_model: build with a training-shaped call.
    self.model(np.zeros((batch_size, config.data.seq_len + self.big, 1), np.int32))
    self.temperature = np.full((batch_size, 1), temperature, np.float64)
    q_zero = config.model.q_levels // 2
    self.seed = tf.constant(np.full((batch_size, self.big, 1), q_zero), dtype=tf.int32)
    start = time.perf_counter()
    self._run(1)  # Traces inference_step.
    self.compile_sec = time.perf_counter() - start

  def _run(self, num_frames: int):
    frame = self.seed
    for _ in range(num_frames):
      frame = self.model(frame, training=False, temperature=self.temperature)
    return frame.numpy()

  def measure(self, num_samples: int) -> Dict[str, float]:
    """Per-sequence and total samples/s over ``num_samples // big_frame`` calls."""
    num_frames = max(1, num_samples // self.big)
    start = time.perf_counter()
    self._run(num_frames)
    sec = time.perf_counter() - start
    per_sequence = num_frames * self.big / sec
    return {
      'samples_per_sec_per_sequence': per_sequence,
      'samples_per_sec_total': per_sequence * self.batch_size,
    }


def measure_pipeline(prism: Prism, config, data_dir: str, num_batches: int) -> float:
  """Target samples/s delivered by PRiSM's ``get_dataset`` (as train.py builds it)."""
  files = sorted(prism.dataset.find_files(data_dir))
  big = int(config.model.frame_sizes[-1])
  batch_size, seq_len = config.train.batch_size, config.data.seq_len
  if len(files) < batch_size:
    raise ValueError(f'{data_dir}: {len(files)} wav files, fewer than batch {batch_size}.')
  dataset = prism.dataset.get_dataset(
    files,
    1000,
    batch_size,
    seq_len,
    big,
    drop_remainder=True,
    q_type=config.model.q_type,
    q_levels=config.model.q_levels,
  )
  # PRiSM prints a line per file it loads; keep the benchmark's output readable.
  with contextlib.redirect_stdout(io.StringIO()):
    it = iter(dataset)
    next(it)
    start = time.perf_counter()
    for _ in range(num_batches):
      next(it)
    sec = time.perf_counter() - start
  return num_batches * batch_size * seq_len / sec


# ---------------------------------------------------------------------------------------
# PRiSM in its own process
# ---------------------------------------------------------------------------------------


class _RemoteMeasurer:
  """A ``Trainer`` or ``Generator`` living in the worker: ``compile_sec`` and ``measure``."""

  def __init__(self, remote: 'RemotePrism', handle: int, compile_sec: float):
    self._remote, self._handle, self.compile_sec = remote, handle, compile_sec

  def measure(self, n: int) -> Dict[str, Any]:
    return self._remote.call('measure', handle=self._handle, n=n)


class RemotePrism:
  """PRiSM driven in a worker process; the same measurements as ``Trainer``, ``Generator``
  and ``measure_pipeline`` in this process. Raises ``ReferenceUnavailable`` like ``Prism``.
  """

  def __init__(self, prism_dir: Optional[str]):
    if not prism_dir:
      raise ReferenceUnavailable('no --prism_dir given. ' + INSTALL_HINT)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(
      os.environ,
      PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]
      ),
    )
    # stderr is shared, so PRiSM's and TensorFlow's messages show up as they happen.
    self._proc = subprocess.Popen(
      [sys.executable, '-m', 'benchmarks.reference', f'--serve={os.path.abspath(prism_dir)}'],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      text=True,
      env=env,
      cwd=root,
    )
    try:
      self._info = self.call('info')
    except BaseException:
      self.close()
      raise

  def call(self, op: str, **kwargs) -> Any:
    self._proc.stdin.write(json.dumps({'op': op, **kwargs}) + '\n')
    self._proc.stdin.flush()
    line = self._proc.stdout.readline()
    if not line:
      raise RuntimeError(
        f'the PRiSM worker exited (code {self._proc.wait()}) during {op!r}; its messages are above.'
      )
    reply = json.loads(line)
    if 'unavailable' in reply:
      raise ReferenceUnavailable(reply['unavailable'])
    if 'error' in reply:
      raise RuntimeError(f'PRiSM worker, {op!r}: {reply["error"]}')
    return reply['result']

  def info(self) -> Dict[str, object]:
    return self._info

  def trainer(self, config) -> _RemoteMeasurer:
    r = self.call('trainer', config=config.to_json())
    return _RemoteMeasurer(self, r['handle'], r['compile_sec'])

  def generator(self, config, batch_size: int) -> _RemoteMeasurer:
    r = self.call('generator', config=config.to_json(), batch_size=batch_size)
    return _RemoteMeasurer(self, r['handle'], r['compile_sec'])

  def measure_pipeline(self, config, data_dir: str, num_batches: int) -> float:
    return self.call(
      'pipeline', config=config.to_json(), data_dir=data_dir, num_batches=num_batches
    )

  def close(self):
    if self._proc.poll() is None:
      self._proc.stdin.close()
      try:
        self._proc.wait(timeout=60)
      except subprocess.TimeoutExpired:
        self._proc.kill()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def serve(prism_dir: str):
  """The worker: one JSON request per stdin line, one JSON reply per line on stdout."""
  import ml_collections  # pylint: disable=g-import-not-at-top

  replies = os.fdopen(os.dup(1), 'w')
  os.dup2(2, 1)  # Whatever PRiSM or TensorFlow print goes to stderr, not into the replies.
  sys.stdout = sys.stderr
  prism, why_not, handles = None, None, {}
  try:
    prism = Prism(prism_dir)
  except ReferenceUnavailable as e:
    why_not = str(e)
  for line in sys.stdin:
    request = json.loads(line)
    op = request.pop('op')
    try:
      if why_not is not None:
        reply = {'unavailable': why_not}
      else:
        if 'config' in request:
          request['config'] = ml_collections.ConfigDict(json.loads(request['config']))
        if op == 'info':
          result = prism.info()
        elif op in ('trainer', 'generator'):
          measurer = (
            Trainer(prism, request['config'])
            if op == 'trainer'
            else Generator(prism, request['config'], request['batch_size'])
          )
          handles[len(handles)] = measurer
          result = {'handle': len(handles) - 1, 'compile_sec': measurer.compile_sec}
        elif op == 'measure':
          result = handles[request['handle']].measure(request['n'])
        elif op == 'pipeline':
          result = measure_pipeline(
            prism, request['config'], request['data_dir'], request['num_batches']
          )
        else:
          raise ValueError(f'unknown request {op!r}')
        reply = {'result': result}
    except Exception as e:  # pylint: disable=broad-except
      reply = {'error': f'{type(e).__name__}: {e}'}
    replies.write(json.dumps(reply) + '\n')
    replies.flush()


def _git_head(path: str) -> Optional[str]:
  try:
    return subprocess.run(
      ['git', '-C', path, 'rev-parse', 'HEAD'], capture_output=True, text=True, check=True
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None


if __name__ == '__main__':
  if len(sys.argv) != 2 or not sys.argv[1].startswith('--serve='):
    sys.exit('usage: python -m benchmarks.reference --serve=PRISM_DIR (run by benchmarks.run)')
  serve(sys.argv[1][len('--serve=') :])
