"""The one place that knows PRiSM SampleRNN's layout: its JSON config and its checkpoints.

PRiSM (TF2) writes object-graph checkpoints with keys such as
``big_frame_rnn/rnn/layer_0/cell/kernel/.ATTRIBUTES/VARIABLE_VALUE``. Its model always
has two frame tiers: ``big_frame_rnn`` (frame_sizes[1]) and ``frame_rnn``
(frame_sizes[0]), over ``sample_mlp``. The mapping to this project's parameters:

=====================================================  ==================================
PRiSM                                                  samplernn_jax
=====================================================  ==================================
``{tier}/inputs/{kernel,bias}``                        ``frame_tier_j/input_proj``
``{tier}/rnn/layer_i/cell/kernel``                     ``frame_tier_j/rnn/layer_i/w_ih``
``{tier}/rnn/layer_i/cell/recurrent_kernel``           ``.../w_hh``
``{tier}/rnn/layer_i/cell/bias`` GRU ``[2, 3D]``       ``.../b_ih`` (row 0), ``b_hh`` (row 1)
``{tier}/rnn/layer_i/cell/bias`` LSTM ``[4D]``         ``.../b``
``{tier}/rnn/layer_i_skip_out/{kernel,bias}``          ``frame_tier_j/rnn/skip_out_i``
``{tier}/upsample`` ``[R, D_out, D_in]``               ``frame_tier_j/upsample`` (transposed)
``sample_mlp/embedding/embeddings``                    ``sample_mlp/embedding``
``sample_mlp/inputs/kernel`` (Conv1D ``[F, Q, D]``)     ``sample_mlp/taps``
``sample_mlp/{hidden1,hidden2,outputs}``               ``sample_mlp/{hidden1,hidden2,output_proj}``
=====================================================  ==================================
"""

import json
import os
from typing import Any, Callable, Dict, Mapping

import jax
import ml_collections
import numpy as np

from samplernn_jax import checkpoint
from samplernn_jax import config as config_lib
from samplernn_jax import default_config
from samplernn_jax import model as model_lib
from samplernn_jax.compat import tf_checkpoint

_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'
_TIER_NAMES = ('frame_rnn', 'big_frame_rnn')  # frame_tier_0, frame_tier_1


def config_from_prism(prism_config: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """This project's full config (defaults elsewhere) for a PRiSM JSON model config."""
  config = default_config.get_config()
  m = config.model
  q_type = prism_config.get('q_type', 'mu-law')
  m.frame_sizes = tuple(int(f) for f in prism_config.get('frame_sizes', m.frame_sizes))
  m.dim = int(prism_config.get('dim', m.dim))
  m.rnn_type = str(prism_config.get('rnn_type', m.rnn_type)).lower()
  m.num_rnn_layers = int(prism_config.get('num_rnn_layers', m.num_rnn_layers))
  m.q_type = q_type
  # PRiSM ignores q_levels for mu-law (always 256).
  m.q_levels = 256 if q_type == 'mu-law' else int(prism_config.get('q_levels', m.q_levels))
  m.emb_size = int(prism_config.get('emb_size') or m.emb_size)
  m.skip_conn = bool(prism_config.get('skip_conn') or False)
  m.rnn_dropout = float(prism_config.get('rnn_dropout') or 0.0)
  config.data.seq_len = int(prism_config.get('seq_len', config.data.seq_len))
  if len(m.frame_sizes) != 2:
    raise ValueError(f'PRiSM models have exactly two frame sizes; got {m.frame_sizes}.')
  return config_lib.validate(config)


def load_prism_config(path: str) -> ml_collections.ConfigDict:
  try:
    with open(path) as f:
      prism_config = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f'{path}: cannot read the PRiSM JSON config: {e}') from None
  try:
    return config_from_prism(prism_config)
  except ValueError as e:
    raise ValueError(f'{path}: {e}') from None


def read_tf_checkpoint(path: str) -> Dict[str, np.ndarray]:
  """The model variables of a TensorFlow checkpoint prefix (``.../model.ckpt-N``), by key.

  Raises:
    FileNotFoundError: no checkpoint at ``path``.
    tf_checkpoint.FormatError: a truncated or corrupt checkpoint file (the message names it).
  """
  if not os.path.exists(path + '.index'):
    raise FileNotFoundError(
      f'{path}: no TensorFlow checkpoint here (expected {path}.index); '
      'pass the prefix, e.g. logdir/default/DATE/model.ckpt-100.'
    )
  reader = tf_checkpoint.Reader(path)
  # Optimizer slots and the object graph are not the model's.
  return {
    k: reader.get_tensor(k)
    for k in reader.shapes
    if k.endswith(_SUFFIX) and 'OPTIMIZER_SLOT' not in k
  }


def _prism_to_params(
  variables: Mapping[str, np.ndarray], *, num_layers: int, skip_conn: bool, rnn_type: str
) -> Dict[str, Any]:
  """Renames and reshapes PRiSM variables into this project's parameter tree."""

  def get(key, transform: Callable[[np.ndarray], np.ndarray] = lambda a: a):
    full = key + _SUFFIX
    if full not in variables:
      raise KeyError(key)
    return np.asarray(transform(variables[full]), np.float32)

  params: Dict[str, Any] = {}
  for j, tier in enumerate(_TIER_NAMES):
    rnn_params = {}
    for i in range(num_layers):
      cell = f'{tier}/rnn/layer_{i}/cell'
      layer = {'w_ih': get(f'{cell}/kernel'), 'w_hh': get(f'{cell}/recurrent_kernel')}
      if rnn_type == 'gru':
        layer['b_ih'] = get(f'{cell}/bias', lambda b: b[0])
        layer['b_hh'] = get(f'{cell}/bias', lambda b: b[1])
      else:
        layer['b'] = get(f'{cell}/bias')
      rnn_params[f'layer_{i}'] = layer
      if skip_conn:
        skip = {'kernel': get(f'{tier}/rnn/layer_{i}_skip_out/kernel')}
        if i == 0:
          skip['bias'] = get(f'{tier}/rnn/layer_{i}_skip_out/bias')
        rnn_params[f'skip_out_{i}'] = skip
    params[f'frame_tier_{j}'] = {
      'input_proj': {'kernel': get(f'{tier}/inputs/kernel'), 'bias': get(f'{tier}/inputs/bias')},
      'rnn': rnn_params,
      'upsample': get(f'{tier}/upsample', lambda u: np.transpose(u, (0, 2, 1))),
    }
  params['sample_mlp'] = {
    'embedding': get('sample_mlp/embedding/embeddings'),
    'taps': get('sample_mlp/inputs/kernel'),
    'hidden1': {'kernel': get('sample_mlp/hidden1/kernel'), 'bias': get('sample_mlp/hidden1/bias')},
    'hidden2': {'kernel': get('sample_mlp/hidden2/kernel'), 'bias': get('sample_mlp/hidden2/bias')},
    'output_proj': {
      'kernel': get('sample_mlp/outputs/kernel'),
      'bias': get('sample_mlp/outputs/bias'),
    },
  }
  return params


def convert(variables: Mapping[str, np.ndarray], config: ml_collections.ConfigDict):
  """PRiSM checkpoint variables -> parameters of ``model_lib.from_config(config.model)``.

  Raises:
    ValueError: a variable is missing or its shape does not fit the config (the message
      names the PRiSM variable and both shapes).
  """
  m = config.model
  try:
    params = _prism_to_params(
      variables, num_layers=m.num_rnn_layers, skip_conn=m.skip_conn, rnn_type=m.rnn_type
    )
  except KeyError as e:
    raise ValueError(
      f'the checkpoint has no variable {e.args[0]!r}, which the config '
      f'(rnn_type={m.rnn_type}, num_rnn_layers={m.num_rnn_layers}, skip_conn='
      f'{m.skip_conn}) needs; is this the config the model was trained with?'
    ) from None
  expected = jax.eval_shape(
    lambda: model_lib.init_params(model_lib.from_config(m), jax.random.key(0))
  )
  flat_expected = dict(jax.tree_util.tree_flatten_with_path(expected)[0])
  flat_params = dict(jax.tree_util.tree_flatten_with_path(params)[0])
  for path, want in flat_expected.items():
    name = jax.tree_util.keystr(path, simple=True, separator='/')
    if path not in flat_params:
      raise ValueError(f'no PRiSM variable maps to parameter {name} {tuple(want.shape)}.')
    got = flat_params[path].shape
    if got != want.shape:
      raise ValueError(
        f'PRiSM variable for {name} has shape {got}, but the config '
        f'(dim={m.dim}, frame_sizes={tuple(m.frame_sizes)}, q_levels='
        f'{m.q_levels}) needs {tuple(want.shape)}.'
      )
  return params


def checkpoint_step(checkpoint_path: str) -> int:
  """The N of a checkpoint prefix ``.../model.ckpt-N``; 0 for a prefix not named so."""
  tail = checkpoint_path.rsplit('-', 1)[-1]
  return int(tail) if tail.isdigit() else 0


def import_checkpoint(checkpoint_path: str, config_path: str, workdir: str, *, step: int = 0):
  """Converts a PRiSM checkpoint + JSON config into an Orbax checkpoint in ``workdir``."""
  config = load_prism_config(config_path)
  variables = read_tf_checkpoint(checkpoint_path)  # Its errors name the file.
  try:
    params = convert(variables, config)
  except ValueError as e:
    raise ValueError(f'{checkpoint_path}: {e}') from None
  checkpoint.save_params(workdir, step, params, config)
  return params, config
