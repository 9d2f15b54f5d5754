"""PRiSM SampleRNN's defaults: 3-tier [16, 64], dim 1024, 4 GRU layers, mu-law, 16 kHz.

Every config field, with one line on what it means. The files in the repository's
``configs/`` start from this and change a few fields; ``samplernn-train`` loads it when no
``--config`` is given. A config file by path, not a module of a package the library imports.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  config.model = model = ml_collections.ConfigDict()
  model.frame_sizes = (16, 64)  # Frame size of each frame tier, lowest first; len + 1 tiers.
  model.dim = 1024  # Width of every RNN, upsampling and MLP layer.
  model.rnn_type = 'gru'  # 'gru' (Keras reset_after variant) or 'lstm'.
  model.num_rnn_layers = 4  # Stacked RNN layers in each frame tier.
  model.q_type = 'mu-law'  # Quantization: 'mu-law', 'a-law' (256 levels) or 'linear'.
  model.q_levels = 256  # Number of amplitude levels (the softmax width).
  model.emb_size = 256  # Kept for PRiSM configs; like PRiSM, the embedding is q_levels wide.
  model.skip_conn = False  # PRiSM skip connections: every RNN layer feeds the tier output.
  model.learn_h0 = False  # Learn each RNN layer's initial state (the paper) instead of zeros.
  model.rnn_dropout = 0.0  # Dropout on RNN layer inputs while training.
  model.dtype = 'float32'  # Matmul dtype: 'float32' or 'bfloat16' (parameters stay float32).
  model.rnn_form = 'auto'  # How RNN layers scan: 'layered', 'wavefront' or 'auto' (per backend).

  config.data = data = ml_collections.ConfigDict()
  data.sample_rate = 16000  # Hz; audio at another rate is resampled on load.
  data.seq_len = 1024  # Samples per truncated-BPTT window (a multiple of the top frame).
  data.val_frac = 0.1  # Fraction of files held out for validation.
  data.shuffle_seed = 0  # Seed of the per-epoch file shuffle.
  data.num_workers = 0  # grain worker processes (0 reads in the main process).
  data.on_bad_file = 'skip'  # A file with a bad header or length: 'skip' it (warned) or 'stop'.

  config.train = train = ml_collections.ConfigDict()
  train.batch_size = 64  # Global batch (files read side by side), split over devices.
  train.num_epochs = 100  # Passes over the training files.
  train.optimizer = 'adam'  # 'adam', 'sgd' (with momentum) or 'rmsprop'.
  train.learning_rate = 1e-3  # Initial learning rate.
  train.adam_eps = 1e-4  # Adam epsilon (PRiSM's value, larger than Adam's usual 1e-8).
  train.momentum = 0.9  # Momentum for sgd and rmsprop.
  train.reduce_learning_rate_after = 0  # Epochs before exponential decay; 0 keeps it constant.
  train.lr_decay_rate = (
    0.1  # Decay of the learning rate per epoch once decay starts (PRiSM: lr * e^-0.1).
  )
  train.clip_norm = 5.0  # Global gradient-norm clip.
  train.seed = 0  # Seed of parameter init, dropout and in-training generation.
  train.log_every_steps = 1  # Steps between log lines.
  train.print_every_seconds = 10.0  # Off a terminal: a step line at most this often; 0: every.
  train.eval_every_steps = 0  # Steps between validations, besides each epoch end; 0: epochs only.
  train.checkpoint_every_epochs = 1  # Epochs between checkpoints.
  train.checkpoint_every_steps = 0  # Steps between checkpoints as well; 0: epochs only.
  train.checkpoint_policy = 'Always'  # 'Always' keeps the newest, 'Best' the best by `monitor`.
  train.max_checkpoints = 5  # Checkpoints kept on disk; 0 keeps all.
  train.monitor = (
    'val_loss'  # Metric for 'Best' and early stopping: val_loss, val_accuracy, loss, accuracy.
  )
  train.early_stopping_patience = 3  # Epochs without improvement before stopping; 0 never stops.

  config.generate = generate = ml_collections.ConfigDict()
  generate.max_generate_per_epoch = 1  # Clips generated after each checkpoint while training.
  generate.output_file_dur = 3.0  # Seconds per clip generated while training.
  generate.temperatures = (0.95,)  # Sampling temperatures, one per clip (last one repeats).
  generate.chunk_size = 16384  # Samples generated per compiled call (a multiple of the top frame).
  generate.max_silence = 2.0  # Seconds of silence before the guard revives a sequence; 0: off.
  generate.silence_dbfs = -60.0  # Frame level (dBFS) below which the guard counts silence.
  generate.guard_prime_seconds = 2.0  # A revived sequence is re-primed on this much of its audio.
  return config
