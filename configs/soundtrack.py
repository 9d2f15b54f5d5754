"""A 3-tier model that learns an album in about an hour on two CPU cores.

samplernn-prepare --input=ALBUM --output_dir=chunks
samplernn-train --workdir=runs/album --config=soundtrack --data_dir=chunks

PRiSM's shape (frames 16 and 64, mu-law, 16 kHz) at a quarter of the width and half the
depth: the silence guard's measurement in the README was made with it.
"""

from samplernn_jax import default_config


def get_config():
  config = default_config.get_config()
  config.model.dim = 256  # A quarter of PRiSM's width: a sixteenth of the RNN work.
  config.model.num_rnn_layers = 2  # Half PRiSM's depth.
  config.train.batch_size = 32  # 4 groups of files per epoch from ~130 training chunks.
  config.train.num_epochs = 8  # About an hour on two CPU cores (4,000 steps of ~0.6 s).
  config.train.log_every_steps = 50
  config.train.eval_every_steps = 500  # Validation bits between epochs as well.
  config.train.checkpoint_every_steps = 500  # Keep several stages of training...
  config.train.max_checkpoints = 0  # ...all of them: curating and comparing need them.
  config.train.early_stopping_patience = 0  # Run every epoch.
  return config
