"""The curation score on real model output: the clips of tests/testdata/curation.

scripts/make_curation_set.py wrote them from a 3-tier model training on Debian's
hyperrogue-music soundtrack (16 kHz): held-out music, the last checkpoint's clip, failures
made from the model's own clips (labels.json says how), the profile of that run's training
chunks, and two clips of the demo model at temperature 0.75. The score before
PROFILE_VERSION 2 put the tone on a DC offset in the green (0.81), above the last
checkpoint's clip (0.69), and the demo's pitched clips in the red (0.16).
"""

import json
import os

import pytest

from samplernn_jax.corpus import demo_corpus
from samplernn_jax.listening import clip_score

FIXTURES = os.path.join(os.path.dirname(__file__), 'testdata', 'curation')
GREEN = 0.7  # The gallery colours a score from here up green.
FAILURES = ('dc_drift_0', 'steady_tone_0', 'stuck_loop_0', 'buzz_0')


@pytest.fixture(scope='module')
def scores():
  with open(os.path.join(FIXTURES, 'profile.json'), encoding='utf-8') as f:
    stored = json.load(f)
  if stored['version'] != clip_score.PROFILE_VERSION:
    pytest.fail(
      'tests/testdata/curation/profile.json is of another PROFILE_VERSION: features changed. '
      'Remake it on purpose with scripts/make_curation_set.py --fixtures=tests/testdata/curation '
      '(docs/listening.md says how).'
    )
  profile = clip_score.Profile.from_json(stored)
  names = ['real_0', 'real_1', 'stage_0', *FAILURES]
  return {n: clip_score.score_file(os.path.join(FIXTURES, f'{n}.flac'), profile) for n in names}


def test_real_music_ranks_above_every_failure_of_model_output(scores):
  failures = {n: scores[n]['score'] for n in FAILURES}
  assert min(scores['real_0']['score'], scores['real_1']['score']) > max(failures.values())
  assert max(failures.values()) < GREEN, failures  # None shown as a good clip.


def test_the_last_checkpoint_ranks_above_the_failures(scores):
  assert scores['stage_0']['score'] > max(scores[n]['score'] for n in FAILURES)


def test_each_failure_is_caught_by_its_defect(scores):
  assert scores['dc_drift_0']['dc'] > 0.5
  assert scores['steady_tone_0']['dc'] > 0.5 and scores['steady_tone_0']['steady'] > 0.5
  assert scores['stuck_loop_0']['steady'] > 0.3
  assert scores['buzz_0']['steady'] > 0.5
  for name in ('real_0', 'real_1'):
    assert scores[name]['dc'] < 0.05 and scores[name]['steady'] < 0.05
  # The last checkpoint's clip changes like music, but drifts (as this run's late ones do).
  assert scores['stage_0']['steady'] < 0.05 and 0.05 < scores['stage_0']['dc'] < 0.3
  # ... under a louder sound: unheard, so it costs nothing (PROFILE_VERSION 2 took 0.3 off).
  assert scores['stage_0']['penalty'] == 0.0


def test_demo_model_clips_are_green_against_the_demo_corpus(tmp_path):
  # The corpus as training synthesizes it: 72 melodies of 4 s at 8 kHz.
  corpus = demo_corpus.synthesize(str(tmp_path), sample_rate=8000)
  profile = clip_score.make_profile(corpus, 8000, 'demo')
  for name in ('demo_0', 'demo_1'):
    got = clip_score.score_file(os.path.join(FIXTURES, f'{name}.flac'), profile)
    assert got['score'] >= GREEN, got
