"""samplernn-fetch on file:// URLs: downloads, archive skips, a bad URL among good ones."""

import numpy as np
import soundfile as sf

from samplernn_jax.corpus import fetch
from samplernn_jax.corpus import prepare


def test_fetch_downloads_skips_archived_and_reports_failures(tmp_path):
  tone = (0.5 * np.sin(np.arange(24000) / 5)).astype(np.float32)
  sf.write(tmp_path / 'take one.wav', tone, 16000)
  sf.write(tmp_path / 'take2.ogg', tone, 16000)
  urls = [
    (tmp_path / 'take one.wav').as_uri(),
    (tmp_path / 'take2.ogg').as_uri(),
    (tmp_path / 'missing.wav').as_uri(),
  ]
  out = tmp_path / 'downloads'
  first = fetch.fetch(urls, str(out), enable_file_urls=True, verbose=False)
  assert len(first.downloaded) == 2 and first.skipped == 0
  assert len(first.errors) == 1 and 'missing' in first.errors[0]
  names = sorted(p.name for p in out.iterdir())
  assert names == ['download-archive.txt', 'take2.ogg', 'take_one.wav']
  again = fetch.fetch(urls[:2], str(out), enable_file_urls=True, verbose=False)
  assert (again.downloaded, again.skipped, again.errors) == ([], 2, [])
  assert 'Skipped (already in the archive): 2' in again.summary()
  # What fetch leaves is what prepare reads.
  results = prepare.prepare(
    [str(out)],
    str(tmp_path / 'chunks'),
    prepare.Settings(chunk_length_ms=500, overlap_ms=0),
    progress=False,
  )
  assert [r.chunks_written for r in results] == [2, 2]
