"""Input pipeline throughput: audio samples delivered per second of wall time.

``measure_pipeline(config, data_dir, num_batches)`` times ``num_batches`` training
windows (after one warm-up window), each worth B * seq_len samples, file reading
and quantization included. ``python -m benchmarks.input_pipeline`` runs it on the
demo corpus at the default config (batch 64, seq_len 1024).
"""

import math
import tempfile
import time

from samplernn_jax import default_config as default
from samplernn_jax import input_pipeline
from samplernn_jax.corpus import demo_corpus


def measure_pipeline(config, data_dir: str, num_batches: int) -> float:
  """Samples per second the training iterator delivers on this host."""
  config = config.copy_and_resolve_references()
  probe = input_pipeline.make_datasets(config, data_dir, num_epochs=1)
  per_epoch = max(probe.windows_per_epoch[0], 1)
  ds = input_pipeline.make_datasets(
    config, data_dir, num_epochs=math.ceil((num_batches + 1) / per_epoch)
  )
  iterator = iter(ds.train)
  batch = next(iterator)  # Starts the read-ahead thread and any workers.
  start = time.perf_counter()
  for _ in range(num_batches):
    batch = next(iterator)
  seconds = time.perf_counter() - start
  return num_batches * batch['x'].shape[0] * config.data.seq_len / seconds


def main() -> None:
  config = default.get_config()
  with tempfile.TemporaryDirectory() as data_dir:
    demo_corpus.synthesize(data_dir, sample_rate=config.data.sample_rate)
    rate = measure_pipeline(config, data_dir, num_batches=500)
  print(
    f'input pipeline: {rate / 1e6:.1f} M samples/s '
    f'(batch {config.train.batch_size}, seq_len {config.data.seq_len}, '
    f'num_workers {config.data.num_workers})'
  )


if __name__ == '__main__':
  main()
