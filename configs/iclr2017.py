"""The paper's best 3-tier music model: learned h0, linear quantization, seq_len 512, batch 128."""

from samplernn_jax import default_config


def get_config():
  config = default_config.get_config()
  config.model.frame_sizes = (
    4,
    16,
  )  # 3-tier: FS = 16 at the top, 4 in the middle (paper, Table 1).
  config.model.num_rnn_layers = 1  # One GRU per tier as in the paper's 3-tier music model.
  config.model.q_type = 'linear'  # The paper quantizes linearly to 256 levels.
  config.model.learn_h0 = True  # The paper learns the initial RNN state.
  config.data.seq_len = 512  # Truncated BPTT length of the paper.
  config.train.batch_size = 128  # The paper's minibatch.
  return config
