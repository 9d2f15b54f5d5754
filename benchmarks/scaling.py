r"""Data-parallel scaling of the compiled train step, told in FLOPs and in modeled GPU time.

    python -m benchmarks.scaling [--config=default] [--batch_sizes=64,512] [--seq_len=1024] \
        [--devices=1,2,4,8] [--dtype=float32] [--rnn_form=layered,wavefront] [--gpu=H200] \
        [--out=benchmarks/results/scaling_default_DATE]

For each global batch and RNN form, compiles the train step for each device count on forced
CPU devices (in a subprocess), reads its depth, per-device FLOPs and collectives, and models
its step time on a GPU (``scaling_lib``: what is read, the model and its parameters). Prints
the parameters, a summary and one table per (batch, form); ``--out`` writes OUT.md and
OUT.json (``benchmarks/results/scaling_default_2026-12-02.*`` is the newest). A few minutes
for the default config.
"""

import json
import os

from absl import app
from absl import flags

from benchmarks import named_configs
from benchmarks import scaling_lib
from benchmarks.scaling_lib import DEFAULT_GPU
from benchmarks.scaling_lib import GPUS
from benchmarks.scaling_lib import MODEL

_CONFIG = flags.DEFINE_string('config', 'default', 'A configs/ module by name: default, small, ...')
_BATCH_SIZES = flags.DEFINE_list(
  'batch_sizes', ['64', '512'], 'Global batches to compile for, each split over the devices.'
)
_SEQ_LEN = flags.DEFINE_integer('seq_len', None, "Window length (default: the config's).")
_DIM = flags.DEFINE_integer('dim', None, "Model width (default: the config's).")
_DEVICES = flags.DEFINE_list('devices', ['1', '2', '4', '8'], 'Device counts to compile for.')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'config.model.dtype.')
_RNN_FORM = flags.DEFINE_list(
  'rnn_form',
  ['layered', 'wavefront'],
  'config.model.rnn_form of each compiled step: layered, wavefront.',
)
_GPU = flags.DEFINE_enum('gpu', DEFAULT_GPU, list(GPUS), 'The GPU of the modeled step time.')
_OUT = flags.DEFINE_string('out', None, 'Path prefix: writes OUT.json and OUT.md.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  from benchmarks import machine  # pylint: disable=g-import-not-at-top

  forms = _RNN_FORM.value
  if not forms or any(f not in ('layered', 'wavefront') for f in forms):
    raise app.UsageError(f'--rnn_form={",".join(forms)}: use layered, wavefront or both.')
  try:
    counts = sorted(int(d) for d in _DEVICES.value)
    batch_sizes = [int(b) for b in _BATCH_SIZES.value]
    named_configs.load_config(_CONFIG.value)
  except ValueError as e:
    raise app.UsageError(f'--devices, --batch_sizes or --config: {e}') from e
  runs = []
  for batch_size in batch_sizes:
    for form in forms:
      config = scaling_lib.config_for(
        _CONFIG.value, batch_size, _SEQ_LEN.value, _DIM.value, _DTYPE.value, form
      )
      print(
        f'Compiling {_CONFIG.value}, global batch {batch_size}, {form} RNNs, for '
        f'{", ".join(map(str, counts))} devices ...',
        flush=True,
      )
      runs.append(
        scaling_lib.with_modeled_times(scaling_lib.run_in_subprocess(config, counts), _GPU.value)
      )
  result = {
    'config': _CONFIG.value,
    'runs': runs,
    'model': {
      k: (list(v) if isinstance(v, tuple) else v) for k, v in config.model.to_dict().items()
    },
    'gpus': GPUS,
    'time_model': MODEL,
    'machine': machine.machine_info(),
  }
  text = '\n'.join(
    [
      f'## Scaling of {_CONFIG.value} ({_DTYPE.value}), read from the compiled step; GPU time '
      f'modeled for the {GPUS[_GPU.value]["name"]}',
      '',
      'Modeled step time = depth x iteration latency + FLOPs per device / (share x matmul peak) '
      '+ ring bytes sent per device / (share x link bandwidth). Time efficiency = time(1) / '
      '(N x time(N)); FLOP efficiency = FLOPs(1) / (N x FLOPs(N)). Parameters:',
      '',
      scaling_lib.parameters_markdown(_DTYPE.value),
      scaling_lib.summary_markdown(runs),
    ]
    + [scaling_lib.markdown(r, _CONFIG.value) for r in runs]
  )
  if _OUT.value:
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value + '.json', 'w') as f:
      json.dump(result, f, indent=1, sort_keys=True, default=str)
    with open(_OUT.value + '.md', 'w') as f:
      f.write(text)
  print(text)


if __name__ == '__main__':
  app.run(main)
