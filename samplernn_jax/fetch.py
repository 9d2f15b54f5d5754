r"""samplernn-fetch: download the audio of playlists or single URLs with yt-dlp.

  samplernn-fetch --output_dir=downloads URL [URL ...]
  samplernn-fetch --output_dir=downloads --batch_file=urls.txt

Downloads the best audio-only stream of every item (``--format``, default
'bestaudio/best': a site with no audio-only stream gives its best stream with
audio, whose audio track samplernn-prepare extracts). No post-processing runs, so
no ffmpeg binary is needed: files keep their original container (webm, m4a, opus,
mp3, ...) and samplernn-prepare decodes them with PyAV.

* File names are restricted to ASCII without spaces: ``{title}-{id}.{ext}``.
* ``{output_dir}/download-archive.txt`` records every finished item, so a re-run
  skips them and only fetches what is new or failed before.
* An item that fails (unavailable, geo-blocked, network error) is reported and
  skipped; the others still download. A summary ends the run, and the exit status
  is 1 if anything failed.
"""

import dataclasses
import os
import re
import sys

from absl import app
from absl import flags
import yt_dlp

from samplernn_jax import cli

ARCHIVE_NAME = 'download-archive.txt'
_ARCHIVED = 'has already been recorded in the archive'


@dataclasses.dataclass
class Report:
  """What one fetch did."""
  downloaded: list[str] = dataclasses.field(default_factory=list)  # File paths.
  skipped: int = 0  # Items already in the download archive.
  errors: list[str] = dataclasses.field(default_factory=list)  # One message per failure.

  def summary(self) -> str:
    lines = [f'Downloaded: {len(self.downloaded)}',
             f'Skipped (already in the archive): {self.skipped}',
             f'Failed: {len(self.errors)}']
    return '\n'.join(lines + [f'  {e}' for e in self.errors])


class _Logger:
  """yt-dlp's logger hook: counts archive skips and collects errors for the summary."""

  def __init__(self, report: Report, verbose: bool):
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


def fetch(urls: list[str], output_dir: str, audio_format: str = 'bestaudio/best',
          enable_file_urls: bool = False, verbose: bool = True) -> Report:
  """Downloads the audio of ``urls`` into ``output_dir``; never raises for an item."""
  os.makedirs(output_dir, exist_ok=True)
  report = Report()
  logger = _Logger(report, verbose)

  def on_progress(status: dict) -> None:
    if status['status'] == 'finished':
      report.downloaded.append(status['filename'])

  options = {
      'format': audio_format,
      'paths': {'home': output_dir},
      'outtmpl': '%(title).100B-%(id)s.%(ext)s',
      'restrictfilenames': True,
      'download_archive': os.path.join(output_dir, ARCHIVE_NAME),
      # Report a failed item through the logger and go on with the next one.
      'ignoreerrors': True,
      'noprogress': True,
      'enable_file_urls': enable_file_urls,
      'logger': logger,
      'progress_hooks': [on_progress],
  }
  with yt_dlp.YoutubeDL(options) as ydl:
    for url in urls:
      logger.url = url
      try:
        ydl.extract_info(url, download=True)
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
    raise FileNotFoundError(f'--batch_file={path}: cannot read it ({e.strerror}); pass a '
                            'text file of URLs, one a line.') from None


def _define_flags() -> None:
  # Defined when run as a program, not on import: see cli.program.
  program = cli.program()
  flags.DEFINE_string('output_dir', 'downloads', 'Directory for the downloads.', **program)
  flags.DEFINE_list('urls', [], 'URLs of items or playlists, comma-separated; '
                    'more may follow as positional arguments.', **program)
  flags.DEFINE_string('batch_file', None, 'A file of URLs, one a line (# comments).',
                      **program)
  flags.DEFINE_string('format', 'bestaudio/best', 'yt-dlp format selector.', **program)
  flags.DEFINE_bool('enable_file_urls', False, 'Accept file:// URLs (off by default, as in '
                    "yt-dlp); yt-dlp's spelling --enable-file-urls works too.", **program)


# yt-dlp's own hints spell its options with dashes; accept them for ours.
_DASHED = {'--enable-file-urls': '--enable_file_urls',
           '--no-enable-file-urls': '--noenable_file_urls',
           '--batch-file': '--batch_file', '--output-dir': '--output_dir'}


def _undash(argv: list[str]) -> list[str]:
  out = []
  for arg in argv:
    name, eq, value = arg.partition('=')
    out.append(_DASHED.get(name, name) + eq + value)
  return out


def main(argv):
  f = flags.FLAGS
  urls = list(f.urls) + list(argv[1:])
  if f.batch_file:
    urls += read_batch_file(f.batch_file)
  if not urls:
    raise app.UsageError('Give URLs as arguments, with --urls or with --batch_file.')
  report = fetch(urls, f.output_dir, f.format, f.enable_file_urls)
  print(report.summary())
  if report.errors:
    sys.exit(1)


def run():
  _define_flags()
  sys.argv = _undash(sys.argv)
  cli.run(main, 'samplernn-fetch')


if __name__ == '__main__':
  run()
