"""One way to write a file: whole or not at all, safe when two processes write at once.

``atomic_write(path)`` writes into a temporary file in the same folder whose name is unique to
the process (``NAME.PID.RANDOM.tmp``), then renames it over ``path``: a reader sees the old file
or the new one, never half of one, and two writers of the same path (training and
``samplernn-generate`` refreshing one gallery, two search workers storing one profile) each
rename a complete file of their own. A kill leaves at most a stray ``*.tmp``, never a damaged
``path``. An existing file's permission bits are kept.
"""

import contextlib
import os
import tempfile
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'w', **open_kwargs) -> Iterator[IO]:
  """``with atomic_write(path) as f: f.write(...)``: ``path`` is replaced when the block ends.

  ``mode`` is ``'w'`` or ``'wb'``; ``open_kwargs`` go to ``open`` (``encoding``...). If the block
  raises, ``path`` is untouched and the temporary file removed.
  """
  if mode not in ('w', 'wb'):
    raise ValueError(f'atomic_write: mode {mode!r}; use "w" or "wb".')
  folder, name = os.path.split(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=f'{name}.{os.getpid()}.', suffix='.tmp', dir=folder)
  try:
    with os.fdopen(fd, mode, **open_kwargs) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    try:
      os.chmod(tmp, os.stat(path).st_mode & 0o7777)
    except FileNotFoundError:  # A new file: the mode a plain open() would give it.
      umask = os.umask(0)
      os.umask(umask)
      os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise


def check_writable(directory: str, flag: str) -> None:
  """Raises OSError naming ``directory`` and ``flag`` unless a file can be created there.

  A real probe, not ``os.access``: it also catches read-only mounts and full quotas. The folder
  is created when missing.
  """
  try:
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryFile(dir=directory):
      pass
  except OSError as e:
    raise OSError(e.errno, f'{e.strerror} (the folder of {flag})', directory) from None
