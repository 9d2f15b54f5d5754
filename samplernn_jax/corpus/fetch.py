"""The audio of playlists or single URLs, downloaded with yt-dlp (``samplernn-fetch``).

Downloads the best audio-only stream of every item (``--format``, default
'bestaudio/best': a site with no audio-only stream gives its best stream with
audio, whose audio track samplernn-prepare extracts). No post-processing runs, so
no ffmpeg binary is needed: files keep their original container (webm, m4a, opus,
mp3, ...) and samplernn-prepare decodes them with PyAV.

* File names are restricted to ASCII without spaces: ``{title}-{id}.{ext}`` (``{title}.{ext}``
  for a ``file://`` URL, whose id is its title).
* ``{output_dir}/download-archive.txt`` records every finished item, so a re-run
  skips them and only fetches what is new or failed before.
* An item that fails (unavailable, geo-blocked, network error) is reported and
  skipped; the others still download. The ``Report`` lists what was done and what failed.
"""

import dataclasses
import os
import re
import sys

import yt_dlp

ARCHIVE_NAME = 'download-archive.txt'
_ARCHIVED = 'has already been recorded in the archive'


@dataclasses.dataclass
class Report:
  """What one fetch did."""

  downloaded: list[str] = dataclasses.field(default_factory=list)  # File paths.
  skipped: int = 0  # Items already in the download archive.
  errors: list[str] = dataclasses.field(default_factory=list)  # One message per failure.

  def summary(self) -> str:
    lines = [
      f'Downloaded: {len(self.downloaded)}',
      f'Skipped (already in the archive): {self.skipped}',
      f'Failed: {len(self.errors)}',
    ]
    return '\n'.join(lines + [f'  {e}' for e in self.errors])


class _Logger:
  """yt-dlp's logger hook: counts archive skips and collects errors for the summary."""

  def __init__(self, report: Report, *, verbose: bool):
    self._report, self._verbose = report, verbose
    self.url = ''  # The URL being fetched, which yt-dlp's messages do not name.

  def debug(self, message: str) -> None:
    # yt-dlp reports archive skips only as a screen message, so it is counted here.
    if _ARCHIVED in message:
      self._report.skipped += 1
    if self._verbose and not message.startswith('[debug]'):
      print(message)

  info = debug

  def warning(self, message: str) -> None:
    print(f'WARNING: {message}', file=sys.stderr)

  def error(self, message: str) -> None:
    line = f'{self.url}: {short_error(message)}'
    if line not in self._report.errors:
      self._report.errors.append(line)
      print(f'ERROR: {line}', file=sys.stderr)


def short_error(message: str) -> str:
  """yt-dlp's error without its prefixes and the ``(caused by ...)`` that repeats it."""
  message = message.removeprefix('ERROR: ')
  message = re.sub(r'^\[[\w:]+\] [^:]*: ', '', message)  # "[generic] ID: "
  return message.split(' (caused by ', 1)[0].strip()


_NAME = '%(title).100B-%(id)s.%(ext)s'
_FILE_NAME = '%(title).100B.%(ext)s'


def fetch(
  urls: list[str],
  output_dir: str,
  *,
  audio_format: str = 'bestaudio/best',
  enable_file_urls: bool = False,
  verbose: bool = True,
) -> Report:
  """Downloads the audio of ``urls`` into ``output_dir``; never raises for an item."""
  os.makedirs(output_dir, exist_ok=True)
  report = Report()
  logger = _Logger(report, verbose=verbose)

  def on_progress(status: dict) -> None:
    if status['status'] == 'finished':
      report.downloaded.append(status['filename'])

  options = {
    'format': audio_format,
    'paths': {'home': output_dir},
    'outtmpl': _NAME,
    'restrictfilenames': True,
    'download_archive': os.path.join(output_dir, ARCHIVE_NAME),
    # Report a failed item through the logger and go on with the next one.
    'ignoreerrors': True,
    'noprogress': True,
    'enable_file_urls': enable_file_urls,
    'logger': logger,
    'progress_hooks': [on_progress],
  }
  # A local file's id is its title (the file name): named once, not twice.
  with (
    yt_dlp.YoutubeDL(options) as ydl,
    yt_dlp.YoutubeDL({**options, 'outtmpl': _FILE_NAME}) as files_ydl,
  ):
    for url in urls:
      logger.url = url
      try:
        (files_ydl if url.startswith('file:') else ydl).extract_info(url, download=True)
      except Exception as e:  # Anything yt-dlp lets through still costs one URL only.
        report.errors.append(f'{url}: {type(e).__name__}: {short_error(str(e))}')
  report.downloaded = list(dict.fromkeys(report.downloaded))
  return report


def read_batch_file(path: str) -> list[str]:
  """URLs of a batch file: one a line, blank lines and '#' comments ignored."""
  try:
    with open(path) as f:
      return [line.strip() for line in f if line.strip() and not line.lstrip().startswith('#')]
  except OSError as e:
    raise FileNotFoundError(
      f'--batch_file={path}: cannot read it ({e.strerror}); pass a text file of URLs, one a line.'
    ) from None
