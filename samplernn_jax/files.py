"""One way to write a file: whole or not at all, safe when two processes write at once.

``atomic_write(path)`` writes into a temporary file in the same folder whose name is unique to
the process (``.NAME.PID.RANDOM.tmp``), then renames it over ``path``: a reader sees the old
file or the new one, never half of one, and two writers of the same path (training and
``samplernn-generate`` refreshing one gallery, two search workers storing one profile) each
rename a complete file of their own. A kill leaves at most a stray temporary file, never a
damaged ``path``; its name is a dot-name without ``path``'s suffix, so no listing or audio
search takes it for data, and it carries the writer's PID, so ``remove_stale_temps`` knows
when the writer is gone. An existing file's permission bits are kept.
"""

import contextlib
import os
import re
import tempfile
from typing import IO, Iterator

# mkstemp's random part: letters, digits and '_'.
_TEMP_RE = re.compile(r'^\..+\.(\d+)\.[a-z0-9_]+\.tmp$')


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'w', **open_kwargs) -> Iterator[IO]:
  """``with atomic_write(path) as f: f.write(...)``: ``path`` is replaced when the block ends.

  ``mode`` is ``'w'`` or ``'wb'``; ``open_kwargs`` go to ``open`` (``encoding``...). If the block
  raises, ``path`` is untouched and the temporary file removed.
  """
  if mode not in ('w', 'wb'):
    raise ValueError(f'atomic_write: mode {mode!r}; use "w" or "wb".')
  folder, name = os.path.split(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=f'.{name}.{os.getpid()}.', suffix='.tmp', dir=folder)
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


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # Someone else's live process.
  # A killed writer whose new parent never reaps it (a container's PID 1 often does not) is a
  # zombie: signals still reach it, but it writes nothing more.
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except (OSError, IndexError):
    return True  # No /proc here: as far as we can tell, alive.


def remove_stale_temps(directory: str) -> list[str]:
  """Deletes the temporary files of ``atomic_write`` in ``directory`` whose writer is gone.

  A killed writer cannot clean up after itself; the next run does. Returns the paths removed.
  """
  removed = []
  try:
    names = os.listdir(directory)
  except OSError:
    return removed
  for name in names:
    match = _TEMP_RE.match(name)
    if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
      with contextlib.suppress(OSError):
        os.remove(os.path.join(directory, name))
        removed.append(os.path.join(directory, name))
  return removed


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
