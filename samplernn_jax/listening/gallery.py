"""A run's listening room, one offline page at ``WORKDIR/gallery/index.html``.

    samplernn-gallery --workdir=runs/demo

The page needs no server and no network: it opens from the file system, plays the clips
where they lie (relative links) and shows pictures written beside it. It holds

* every generated clip under the workdir (in-training clips in ``generated/`` and
  ``samplernn-generate`` output written into the workdir): a player, a waveform over
  spectrogram picture, step, epoch, temperature, duration, seed audio and the curation
  score (``clip_score``) with its parts; sortable and filterable in the page;
* the training curves from ``metrics.jsonl``, with the steps that made clips marked;
* a few training chunks with their pictures and scores, to compare by ear and by eye;
* picks, kept in the browser's local storage, as a text file or a copy command.

Training and ``samplernn-generate`` rebuild the page after they write clips (``refresh``).
Scores and pictures are cached in ``gallery/`` by each clip's size and modification time
(and the profile's and scoring rule's), so a rebuild only looks at new clips.
"""

import dataclasses
import datetime
import hashlib
import json
import os
import re
import shutil
from typing import Optional
import urllib.parse

from absl import logging
import jinja2
import numpy as np

from samplernn_jax import audio_io
from samplernn_jax import files
from samplernn_jax import workdir as workdir_lib
from samplernn_jax.listening import clip_score

INDEX = 'index.html'
# Folders of a workdir that never hold generated clips.
_NOT_CLIPS = frozenset(
  {
    workdir_lib.CHECKPOINTS,
    workdir_lib.BROKEN_CHECKPOINTS,
    workdir_lib.TENSORBOARD,
    workdir_lib.DEMO_CORPUS,
    workdir_lib.GALLERY,
  }
)
# PRiSM's names: ..._e=STEP(i)_t=TEMP.wav (training writes the epoch there instead).
_NAME_RE = re.compile(r'_e=(\d+)(?:\((\d+)\))?_t=([0-9.eE+-]+)\.wav$')
NUM_TRAINING_CHUNKS = 3
# Pictures: small, since a run may have hundreds of clips; larger for a picture on its own
# (samplernn-generate --plot).
_CLIP_FIGSIZE = (4.8, 2.4)
LARGE_FIGSIZE = (9.6, 4.8)
_DPI = 72


@dataclasses.dataclass
class Clip:
  """One row of the page; paths relative to the workdir, URLs relative to the page."""

  path: str
  url: str
  image_url: str
  origin: str  # 'training', 'generate' or 'training data'
  step: Optional[int]
  epoch: Optional[int]
  temperature: Optional[float]
  seed_audio: Optional[str]
  score: dict


# ---------------------------------------------------------------------------------------
# What the workdir holds
# ---------------------------------------------------------------------------------------


def find_clips(workdir: str) -> list:
  """Paths (relative to ``workdir``) of generated WAVs, sorted; data and dot-names skipped."""
  skip = lambda root, _: (
    os.path.dirname(root) == workdir.rstrip(os.sep) and os.path.basename(root) in _NOT_CLIPS
  )
  return sorted(
    os.path.relpath(p, workdir) for p in audio_io.find_audio(workdir, ('.wav',), skip_dir=skip)
  )


def _generate_records(workdir: str) -> dict:
  """``{clip path: (step, temperature, seed audio)}`` from samplernn-generate's scores files."""
  records = {}
  for root, dirs, names in os.walk(workdir):
    dirs[:] = [d for d in dirs if not d.startswith('.') and d not in _NOT_CLIPS]
    for name in names:
      if not name.endswith('_scores.json'):
        continue
      try:
        with open(os.path.join(root, name)) as f:
          record = json.load(f)
        for s in record['sequences']:
          path = os.path.relpath(os.path.join(root, s['file']), workdir)
          records[path] = (record.get('step'), s.get('temperature'), record.get('seed_audio'))
      except (OSError, ValueError, KeyError, TypeError):
        continue  # Not one of ours, or half written: the name still tells step and temperature.
  return records


def describe(path: str, epoch_steps: dict, records: dict) -> dict:
  """Origin, step, epoch, temperature and seed audio of a clip, from its records or name."""
  match = _NAME_RE.search(path)
  number = int(match.group(1)) if match else None
  temperature = float(match.group(3)) if match else None
  if path in records:
    step, temp, seed = records[path]
    return dict(
      origin='generate',
      step=step,
      epoch=None,
      temperature=temp if temp is not None else temperature,
      seed_audio=seed,
    )
  if path.startswith(workdir_lib.GENERATED + os.sep):  # Training names clips by epoch.
    return dict(
      origin='training',
      step=epoch_steps.get(number),
      epoch=number,
      temperature=temperature,
      seed_audio=None,
    )
  return dict(origin='generate', step=number, epoch=None, temperature=temperature, seed_audio=None)


# ---------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------


def _figure(figsize):
  # The object API, not pyplot: no global state, no display backend, safe in any thread.
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  return Figure(figsize=figsize, dpi=_DPI)


def plot_clip(
  audio_N: np.ndarray,
  sample_rate: int,
  path: str,
  figsize: tuple = _CLIP_FIGSIZE,
  title: Optional[str] = None,
) -> None:
  """A waveform-over-spectrogram PNG at ``path``, small unless ``figsize`` says otherwise."""
  fig = _figure(figsize)
  top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={'height_ratios': [1, 2]})
  if title:
    top.set_title(title, fontsize=8)
  seconds = audio_N.shape[0] / sample_rate
  top.plot(np.arange(audio_N.shape[0]) / sample_rate, audio_N, linewidth=0.4, color='#335')
  top.set_ylim(-1, 1)
  top.set_yticks([-1, 0, 1])
  top.set_xlim(0, max(seconds, 1e-3))
  nfft = int(min(512, max(16, 2 ** int(np.log2(max(16, audio_N.shape[0] // 8))))))
  signal = np.pad(audio_N, (0, max(0, nfft - audio_N.shape[0]))) + 1e-9
  with np.errstate(divide='ignore'):  # A constant clip has empty bins: -inf dB, drawn black.
    bottom.specgram(
      signal, NFFT=nfft, Fs=sample_rate, noverlap=nfft // 2, cmap='magma', vmin=-120, vmax=0
    )
  bottom.set_ylabel('Hz')
  bottom.set_xlabel('s')
  for ax in (top, bottom):
    ax.tick_params(labelsize=7)
  bottom.yaxis.label.set_size(7)
  bottom.xaxis.label.set_size(7)
  fig.tight_layout(pad=0.3)
  _save(fig, path)


def plot_curves(records: list, clip_steps: list, path: str) -> bool:
  """Train and validation bits/sample and the learning rate against step; False if no data.

  ``records`` as ``workdir.read_records`` returns them.
  """

  def curve(kind, field):
    return [(r['step'], r[field]) for r in records if r['kind'] == kind and field in r]

  train = curve('train', 'bits_per_sample')
  val = curve('val', 'val_bits_per_sample')
  lr = curve('epoch', 'learning_rate')
  if not (train or val or lr):
    return False
  fig = _figure((9, 3.6))
  bits, rate = fig.subplots(2, 1, sharex=True, gridspec_kw={'height_ratios': [3, 1]})
  if train:
    bits.plot(*zip(*train), linewidth=0.8, label='train')
  if val:
    bits.plot(*zip(*val), 'o-', markersize=3, label='validation')
  bits.set_ylabel('bits / sample')
  if lr:
    rate.plot(*zip(*lr), 'o-', markersize=2, color='#777')
  rate.set_ylabel('learning rate')
  rate.set_xlabel('step')
  for ax in (bits, rate):
    for i, s in enumerate(sorted(set(clip_steps))):
      ax.axvline(
        s,
        color='#c33',
        linewidth=0.8,
        linestyle=':',
        label='clips made' if ax is bits and i == 0 else None,
      )
    ax.tick_params(labelsize=8)
  if bits.get_legend_handles_labels()[0]:  # Only the learning rate: nothing to name.
    bits.legend(fontsize=8)
  if train:
    # The jumps are real, not a plotting artefact: the loop zeroes the RNN state on each
    # batch of new files (input_pipeline's 'reset'), and the first windows lack context.
    bits.set_title(
      'Train loss rises where a batch of new files starts (each epoch start is one): '
      'the RNN state starts from zero there.',
      fontsize=7,
      loc='left',
    )
  fig.tight_layout(pad=0.4)
  _save(fig, path)
  return True


def _save(fig, path: str) -> None:
  with files.atomic_write(path, 'wb') as f:
    fig.savefig(f, format='png')


# ---------------------------------------------------------------------------------------
# Scores and pictures, cached
# ---------------------------------------------------------------------------------------


def picture_name(key: str) -> str:
  """The picture file of the clip at ``key`` (a path relative to the workdir).

  Readable, and one per path: the file name's safe characters, then a short hash of the
  whole path, so ``out/x/y.wav``, ``out/x_y.wav`` and ``out_x_y.wav`` get three pictures.
  """
  readable = re.sub(r'[^A-Za-z0-9_.-]', '_', os.path.basename(key))[:60]
  return f'{readable}-{hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:12]}.png'


class _Cache:
  """Each clip's score and picture, kept while the file, the profile and the scoring rule
  (``clip_score.SCORE_VERSION``) are unchanged."""

  def __init__(self, gallery_dir: str, profile_stamp: str):
    self.path = os.path.join(gallery_dir, 'cache.json')
    self.profile_stamp = profile_stamp
    self.images_dir = os.path.join(gallery_dir, 'images')
    os.makedirs(self.images_dir, exist_ok=True)
    try:
      with open(self.path) as f:
        self.entries = json.load(f)
    except (OSError, ValueError):
      self.entries = {}

  def get(self, key: str, file_path: str, profile) -> tuple:
    """(score parts, picture file name) of ``file_path``; computed if missing or stale."""
    st = os.stat(file_path)
    stamp = [st.st_size, st.st_mtime_ns, self.profile_stamp, clip_score.SCORE_VERSION]
    image = picture_name(key)
    entry = self.entries.get(key)
    picture_lost = (
      entry is not None
      and 'error' not in entry['score']
      and not os.path.exists(os.path.join(self.images_dir, image))
    )
    if entry is None or entry['stamp'] != stamp or picture_lost:
      try:
        samples_NxC, rate = audio_io.read_audio(file_path)
      except (audio_io.AudioError, OSError) as e:
        score = {'score': clip_score.WORST_SCORE, 'error': str(e)}
      else:
        audio_N = audio_io.to_mono(samples_NxC)
        score = clip_score.score_audio(audio_N, rate, profile)
        plot_clip(audio_N, rate, os.path.join(self.images_dir, image))
      entry = self.entries[key] = {'stamp': stamp, 'score': score}
    return entry['score'], image

  def save(self, keep: set):
    self.entries = {k: v for k, v in self.entries.items() if k in keep}
    with files.atomic_write(self.path) as f:
      json.dump(self.entries, f)


def _url(path: str, start: str) -> str:
  return urllib.parse.quote(os.path.relpath(path, start).replace(os.sep, '/'))


def _training_chunks(workdir: str, profile, gallery_dir: str, trusted: list) -> list:
  """A few training files copied into the gallery, so the page works wherever data lives.

  The gallery is meant to be shared, and every file of a workdir is untrusted, the profile
  naming the examples included, its ``source`` too. So examples are copied only from a data
  folder this process was given (``trusted``: training's ``--data_dir``, the gallery's
  ``--reference``) or the workdir's own demo corpus, only files inside it
  (``clip_score.example_paths``) that decode as audio, and what is copied is the decoded
  audio, written anew. Without such a folder the copies already on the page stay as they are.
  """
  chunks_dir = os.path.join(gallery_dir, 'chunks')
  demo = os.path.realpath(os.path.join(workdir, workdir_lib.DEMO_CORPUS))
  folders = {os.path.realpath(d) for d in trusted if d} | {demo}
  sources = []
  if profile and profile.source:
    if os.path.realpath(profile.source) in folders:
      sources = clip_score.example_paths(profile)
    elif os.path.isdir(chunks_dir):  # Kept from a build that was given the data.
      return sorted(audio_io.find_audio(chunks_dir, ('.wav',)))[:NUM_TRAINING_CHUNKS]
  if not sources and os.path.isdir(demo):
    found = (os.path.realpath(p) for p in audio_io.find_audio(demo, ('.wav',)))
    sources = [p for p in found if os.path.commonpath([p, demo]) == demo]
  os.makedirs(chunks_dir, exist_ok=True)
  copies = []
  for source in sources:
    if len(copies) == NUM_TRAINING_CHUNKS:
      break
    copy = os.path.join(chunks_dir, os.path.splitext(os.path.basename(source))[0] + '.wav')
    if not os.path.exists(copy) or os.path.getmtime(copy) < os.path.getmtime(source):
      try:
        samples_NxC, rate = audio_io.read_audio(source)
      except (audio_io.AudioError, OSError) as e:
        logging.warning('%s: not copied onto the page, not readable audio (%s).', source, e)
        continue
      audio_io.write_wav_atomic(copy, audio_io.to_mono(samples_NxC), rate)
      shutil.copystat(source, copy)  # Its time says when the source changes again.
    copies.append(copy)
  return copies


# ---------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------


def build(workdir: str, reference: Optional[str] = None, data_dir: Optional[str] = None) -> str:
  """Writes ``WORKDIR/gallery/index.html`` and the pictures beside it; returns its path.

  ``reference``: a folder of training audio to profile (stored in the workdir) when the
  workdir has no profile yet, e.g. a run trained before profiles or an imported model.
  ``reference`` and ``data_dir`` (the run's training data) are folders the caller was given:
  training chunks are copied onto the page only from one of them (see ``_training_chunks``).
  Raises FileNotFoundError if ``workdir`` is not a directory.
  """
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f'{workdir}: no such workdir; pass --workdir of a training run.')
  workdir = os.path.abspath(workdir)
  gallery_dir = os.path.join(workdir, workdir_lib.GALLERY)
  # Before any work: a read-only workdir (someone else's run, a shared mount) fails in one
  # line naming the folder, not on the first picture's temporary file.
  files.check_writable(gallery_dir, '--workdir')
  profile = clip_score.load_profile(workdir)
  if profile is None and reference:
    profile = clip_score.reference_profile(reference)
    clip_score.save_profile(workdir, profile)
  profile_stamp = str(os.stat(clip_score.profile_path(workdir)).st_mtime_ns) if profile else 'none'
  cache = _Cache(gallery_dir, profile_stamp)

  records = workdir_lib.read_records(workdir)
  epoch_steps = {r['epoch']: r['step'] for r in records if r['kind'] == 'epoch'}
  generated = _generate_records(workdir)
  clips = []
  for path in find_clips(workdir):
    score, image = cache.get(path, os.path.join(workdir, path), profile)
    clips.append(
      Clip(
        path=path,
        url=_url(os.path.join(workdir, path), gallery_dir),
        image_url=_url(os.path.join(cache.images_dir, image), gallery_dir),
        score=score,
        **describe(path, epoch_steps, generated),
      )
    )
  chunks = []
  for copy in _training_chunks(workdir, profile, gallery_dir, [reference, data_dir]):
    key = os.path.relpath(copy, workdir)
    score, image = cache.get(key, copy, profile)
    chunks.append(
      Clip(
        path=key,
        url=_url(copy, gallery_dir),
        image_url=_url(os.path.join(cache.images_dir, image), gallery_dir),
        origin='training data',
        step=None,
        epoch=None,
        temperature=None,
        seed_audio=None,
        score=score,
      )
    )
  cache.save({c.path for c in clips + chunks})
  has_curves = plot_curves(
    records, [c.step for c in clips if c.step is not None], os.path.join(gallery_dir, 'curves.png')
  )

  env = jinja2.Environment(
    loader=jinja2.PackageLoader('samplernn_jax.listening', 'templates'),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
  )
  page = env.get_template('gallery.html.j2').render(
    run=os.path.basename(workdir),
    workdir=workdir,
    clips=clips,
    chunks=chunks,
    has_curves=has_curves,
    has_profile=profile is not None,
    parts=list(clip_score.GROUP_WEIGHTS) + list(clip_score.PENALTY_WEIGHTS),
    penalties=list(clip_score.PENALTY_WEIGHTS),
    last_step=records[-1]['step'] if records else None,
    built=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC'),
  )
  index = os.path.join(gallery_dir, INDEX)
  with files.atomic_write(index, encoding='utf-8') as f:
    f.write(page)
  return index


def refresh(workdir: str, data_dir: Optional[str] = None) -> Optional[str]:
  """``build`` for training and generation: a failure is logged, never raised.

  The page is a convenience; a broken picture or an odd file must not stop a run that
  already wrote its clips.
  """
  try:
    return build(workdir, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('Could not rebuild the gallery of %s: %s: %s', workdir, type(e).__name__, e)
    return None
