"""The listening room: the page a run gets, its rebuilds, its command, and the page in Chromium.

One tiny trained run (one epoch on six 0.2 s files, two clips at the checkpoint, two more
from samplernn-generate) serves every test. The browser test drives Debian's Chromium
through its chromedriver; outside CI it is skipped when they are not installed.
"""

import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

from samplernn_jax import train
from samplernn_jax import workdir as workdir_lib
from samplernn_jax.corpus import demo_corpus
from samplernn_jax.listening import clip_score
from samplernn_jax.listening import clips
from samplernn_jax.listening import gallery
from samplernn_jax.listening import training_hooks
from tests.conftest import load_config

REPO = pathlib.Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / 'tests' / 'artifacts'


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """A workdir with a profile, metrics, two in-training clips and two generated ones."""
  corpus = str(tmp_path_factory.mktemp('corpus'))
  demo_corpus.synthesize(corpus, sample_rate=8000, num_files=6, seconds=0.2)
  config = load_config('tiny')
  config.train.num_epochs = 1
  config.train.log_every_steps = 5
  config.generate.max_generate_per_epoch = 2
  config.generate.output_file_dur = 0.25
  workdir = str(tmp_path_factory.mktemp('runs') / 'tiny')
  train.train_and_evaluate(config, workdir, corpus, hooks=training_hooks.training_hooks(config))
  clips.generate_files(
    workdir,
    os.path.join(workdir, 'samples', 'clip.wav'),
    num_seqs=2,
    duration=0.25,
    temperatures=[0.9, 1.1],
    progress=False,
  )
  return workdir


def _page(workdir) -> str:
  return pathlib.Path(workdir, workdir_lib.GALLERY, gallery.INDEX).read_text()


def test_training_and_generation_build_the_page(run):
  assert clip_score.load_profile(run).num_segments == 5  # The training files' profile.
  page = _page(run)
  for clip in (
    'generated/tiny_e=1(0)_t=0.95.wav',
    'generated/tiny_e=1(1)_t=0.95.wav',
    'samples/clip_e=50(0)_t=0.9.wav',
    'samples/clip_e=50(1)_t=1.1.wav',
  ):
    assert f'data-path="{clip}"' in page, clip
  assert 'No clips yet' not in page and 'curves.png' in page
  images = os.listdir(os.path.join(run, workdir_lib.GALLERY, 'images'))
  assert len(images) == 4 + gallery.NUM_TRAINING_CHUNKS
  chunks = os.listdir(os.path.join(run, workdir_lib.GALLERY, 'chunks'))
  assert len(chunks) == gallery.NUM_TRAINING_CHUNKS
  # In-training clips are named by epoch; the page gives the step from metrics.jsonl.
  clip = [c for c in _clips(run) if c.path.startswith(workdir_lib.GENERATED)][0]
  assert (clip.origin, clip.epoch, clip.step, clip.temperature) == ('training', 1, 50, 0.95)
  sample = [c for c in _clips(run) if c.path.startswith('samples')][0]
  assert (sample.origin, sample.step, sample.temperature) == ('generate', 50, 0.9)
  # The page scores as samplernn-score does.
  assert sample.score['score'] == pytest.approx(
    clip_score.score_paths([os.path.join(run, sample.path)], run)[0]['score']
  )


def test_a_new_scoring_rule_rescores_cached_clips(run, monkeypatch):
  gallery.build(run)
  scored = []
  real = clip_score.score_audio
  monkeypatch.setattr(clip_score, 'score_audio', lambda *a: scored.append(1) or real(*a))
  gallery.build(run)
  assert not scored  # Unchanged files, profile and rule: all from the cache.
  monkeypatch.setattr(clip_score, 'SCORE_VERSION', clip_score.SCORE_VERSION + 1)
  gallery.build(run)
  assert len(scored) == len(gallery.find_clips(run)) + gallery.NUM_TRAINING_CHUNKS


def _clips(workdir):
  records = gallery._generate_records(workdir)  # pylint: disable=protected-access
  steps = {r['epoch']: r['step'] for r in workdir_lib.read_records(workdir, 'epoch')}
  cache = json.loads(pathlib.Path(workdir, workdir_lib.GALLERY, 'cache.json').read_text())
  return [
    gallery.Clip(
      path=p, url='', image_url='', score=cache[p]['score'], **gallery.describe(p, steps, records)
    )
    for p in gallery.find_clips(workdir)
  ]


def test_page_is_rebuilt_after_generation(run, tmp_path):
  before = _page(run)
  time.sleep(1.1)  # The page's build time has whole seconds.
  clips.generate_files(run, os.path.join(run, 'later', 'more.wav'), duration=0.1, progress=False)
  after = _page(run)
  assert 'data-path="later/more_e=50_t=0.95.wav"' in after
  assert 'later/more' not in before
  built = lambda page: page.split('<time id="built">')[1].split('<')[0]
  assert built(after) > built(before)
  # Output outside the workdir leaves the page alone.
  clips.generate_files(run, str(tmp_path / 'elsewhere.wav'), duration=0.1, progress=False)
  assert _page(run) == after
  shutil.rmtree(os.path.join(run, 'later'))
  gallery.build(run)


def test_a_run_without_clips_or_metrics_still_renders(tmp_path):
  page = pathlib.Path(gallery.build(str(tmp_path))).read_text()
  assert 'No clips yet' in page and 'No metrics yet' in page and 'id="no-profile"' in page
  with open(tmp_path / workdir_lib.METRICS, 'w') as f:
    f.write(
      json.dumps(
        {
          'step': 10,
          'epoch': 1,
          'loss': 5.0,
          'bits_per_sample': 7.5,
          'accuracy': 0.01,
          'sec_per_step': 0.1,
        }
      )
      + '\n{"step": 2'
    )  # Torn line.
  page = pathlib.Path(gallery.build(str(tmp_path))).read_text()
  assert 'No clips yet' in page and 'curves.png' in page
  # A file that is not audio is a row saying so, not a failed page.
  (tmp_path / 'out').mkdir()
  (tmp_path / 'out' / 'broken_e=3_t=1.0.wav').write_bytes(b'RIFF')
  page = pathlib.Path(gallery.build(str(tmp_path))).read_text()
  assert 'data-path="out/broken_e=3_t=1.0.wav" data-score="-1.0"' in page
  assert 'unreadable: ' in page


def test_log_lines_that_are_json_but_not_records_are_skipped_with_one_warning(tmp_path, caplog):
  record = {'kind': 'epoch', 'step': 10, 'epoch': 1, 'loss': 5.0, 'learning_rate': 1e-3}
  (tmp_path / workdir_lib.METRICS).write_text(f'[1, 2]\n3\n{json.dumps(record)}\n"text"\n')
  with caplog.at_level(logging.WARNING):
    page = pathlib.Path(gallery.build(str(tmp_path))).read_text()
  assert 'curves.png' in page and 'last logged step 10' in page
  (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
  assert 'skipped 3 damaged line(s): line 1 (not a JSON object), 2' in warning, warning


def test_gallery_command(run, tmp_path):
  command = [sys.executable, '-m', 'samplernn_jax.commands.gallery']
  proc = subprocess.run([*command, f'--workdir={run}'], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert f'Wrote {os.path.join(run, workdir_lib.GALLERY, gallery.INDEX)}' in proc.stdout
  proc = subprocess.run(
    [*command, f'--workdir={tmp_path}/nowhere'], capture_output=True, text=True, timeout=120
  )
  assert proc.returncode == 1 and 'nowhere: no such workdir' in proc.stderr
  assert 'Traceback' not in proc.stderr


# ---------------------------------------------------------------------------------------
# In a real browser
# ---------------------------------------------------------------------------------------


def _chromium(user_data_dir):
  """A headless Debian Chromium under Selenium; nothing is downloaded."""
  binary = shutil.which('chromium') or shutil.which('chromium-browser')
  driver = shutil.which('chromedriver')
  if not (binary and driver):
    reason = 'needs Chromium and chromedriver: apt-get install -y chromium chromium-driver'
    if os.environ.get('CI') == 'true':
      pytest.fail(f'CI must run the browser test; it {reason} (.ci/run does).')
    pytest.skip(f'The page test {reason}.')
  from selenium import webdriver  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top

  options = webdriver.ChromeOptions()
  options.binary_location = binary
  for arg in (
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    f'--user-data-dir={user_data_dir}',
    '--window-size=1280,1400',
  ):
    options.add_argument(arg)
  options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
  return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def _wait(browser, script, timeout=30):
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top

  return WebDriverWait(browser, timeout).until(lambda b: b.execute_script(script))


def _scores_in_order(browser):
  return browser.execute_script(
    "return Array.from(document.querySelectorAll('#clip-table tr.clip'))"
    '.map(r => parseFloat(r.dataset.score));'
  )


def test_page_in_chromium(run, tmp_path):
  browser = _chromium(tmp_path / 'profile')
  try:
    browser.get(pathlib.Path(run, workdir_lib.GALLERY, gallery.INDEX).as_uri())
    # Every player has read its file's header: a duration, no error.
    audio = _wait(
      browser,
      """
        const a = Array.from(document.querySelectorAll('audio'));
        if (a.some(x => x.error)) return a.map(x => [x.src, x.error && x.error.code]);
        return a.every(x => x.readyState >= 1) && a.map(x => [x.src, x.duration]);""",
    )
    assert len(audio) == 4 + gallery.NUM_TRAINING_CHUNKS
    assert all(isinstance(d, (int, float)) and d > 0 for _, d in audio), audio
    images = _wait(
      browser,
      """
        const i = Array.from(document.images);
        return i.every(x => x.complete) && i.map(x => [x.src, x.naturalWidth]);""",
    )
    assert len(images) == 1 + 4 + gallery.NUM_TRAINING_CHUNKS  # Curves, clips, chunks.
    assert all(width > 0 for _, width in images), images

    from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
    from selenium.webdriver.support.ui import Select  # pylint: disable=g-import-not-at-top

    best_first = _scores_in_order(browser)
    assert best_first == sorted(best_first, reverse=True) and len(set(best_first)) > 1
    Select(browser.find_element(By.ID, 'sort')).select_by_value('score-asc')
    assert _scores_in_order(browser) == sorted(best_first)
    Select(browser.find_element(By.ID, 'sort')).select_by_value('score-desc')
    assert _scores_in_order(browser) == best_first

    # A pick survives a reload, and the copy command names it.
    last = browser.find_elements(By.CSS_SELECTOR, '#clip-table tr.clip')[-1]
    picked = last.get_attribute('data-path')
    last.find_element(By.CSS_SELECTOR, 'input.pick').click()
    browser.refresh()
    row = browser.find_element(By.CSS_SELECTOR, f'tr.clip[data-path="{picked}"]')
    assert row.find_element(By.CSS_SELECTOR, 'input.pick').is_selected()
    assert browser.find_element(By.ID, 'pick-count').text == '1'
    command = browser.find_element(By.ID, 'pick-command').get_attribute('value')
    assert f"'{picked}' picks/" in command and 'mkdir -p picks' in command

    # Hiding low scores hides rows.
    threshold = sorted(best_first)[1]
    box = browser.find_element(By.ID, 'min-score')
    box.clear()
    box.send_keys(str(threshold))
    shown = browser.execute_script(
      "return document.querySelectorAll('#clip-table tr.clip:not([hidden])').length;"
    )
    assert shown == sum(s >= threshold for s in best_first) < len(best_first)

    ARTIFACTS.mkdir(exist_ok=True)
    browser.execute_script(
      "const box = document.getElementById('min-score');"
      "box.value = -1; box.dispatchEvent(new Event('input'));"
    )
    assert browser.save_screenshot(str(ARTIFACTS / 'gallery.png'))
    errors = [e for e in browser.get_log('browser') if e['level'] == 'SEVERE']
    assert not errors, errors
  finally:
    browser.quit()
