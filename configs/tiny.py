"""A seconds-scale 3-tier model for tests."""

from samplernn_jax import default_config


def get_config():
  config = default_config.get_config()
  config.model.frame_sizes = (2, 8)  # Small frames keep windows short.
  config.model.dim = 16  # Narrow layers: each step is milliseconds on a CPU.
  config.model.num_rnn_layers = 2  # Two layers so stacking and skips are exercised.
  config.model.q_levels = 256  # mu-law needs 256.
  config.data.seq_len = 32  # Short windows.
  config.data.sample_rate = 8000  # Lower rate keeps test corpora small.
  config.train.batch_size = 4  # Divisible by 1, 2 and 4 devices.
  config.train.num_epochs = 2  # Tests run a couple of epochs at most.
  config.generate.output_file_dur = 0.05  # Short clips.
  config.generate.chunk_size = 64  # Several chunks per clip, so chunking is exercised.
  # Off: random parameters are not what the guard is for, and each sampler it is in compiles
  # its re-priming too. tests/silence_guard_test.py turns it on where it is the subject.
  config.generate.max_silence = 0.0
  return config
