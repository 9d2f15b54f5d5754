"""A small 3-tier model that learns the demo corpus's plucked pitches in minutes on a CPU.

samplernn-train --workdir=runs/demo --config=configs/demo.py
"""

from samplernn_jax import default_config


def get_config():
  config = default_config.get_config()
  config.model.frame_sizes = (4, 16)  # Short frames: an 8 kHz pluck period spans 18-73 samples.
  config.model.dim = 128  # Narrow: tens of milliseconds per step on two CPU cores.
  config.model.num_rnn_layers = 1  # One GRU layer per frame tier.
  config.data.sample_rate = 8000  # Half PRiSM's rate: twice the context per window.
  config.data.seq_len = 256  # 32 ms windows.
  config.train.batch_size = 16  # 4 groups of files per epoch from the 65 demo training files.
  config.train.num_epochs = 6  # A few minutes on a laptop CPU.
  config.train.log_every_steps = 50  # A line every 50 steps.
  config.train.early_stopping_patience = 0  # Run every epoch.
  config.generate.output_file_dur = 2.0  # Seconds per clip after each epoch.
  config.generate.temperatures = (0.75,)  # After 4 epochs: periodic at 0.75, noisy at 0.95.
  config.generate.chunk_size = 4096  # Samples per compiled generation call.
  return config
