"""What every ``samplernn-*`` command shares: its own flags in ``--help``, quiet logs, and
one line on stderr (no traceback) for every mistake a person can fix.

A command module defines its flags inside ``run()`` with ``**cli.program()`` (so that
importing it defines nothing and two commands' ``--workdir`` never collide) and ends with
``cli.run(main, 'samplernn-NAME')``.
"""

import ast
import errno
import logging as py_logging
import os
import re
import sys
import tempfile
from typing import Callable

from absl import app
from absl import flags


def program() -> dict:
  """Keyword arguments that register a flag under the running program.

  absl's ``--help`` lists the flags of the module named ``sys.argv[0]`` only; flags defined
  in a library module would show under ``--helpfull`` alone, among Orbax's and absl's.
  """
  return {'module_name': sys.argv[0]}


def own_flags(*names: str) -> None:
  """Lists flags defined by a helper (e.g. ``config_flags``) in this program's ``--help``."""
  for name in names:
    flags.FLAGS.register_flag_by_module(sys.argv[0], flags.FLAGS[name])


# ---------------------------------------------------------------------------------------
# Quiet logs
# ---------------------------------------------------------------------------------------

# A system error in an Orbax background thread (a full disk, say) is logged there with
# its traceback, once per thread, and raised again in the main thread, which reports it.
_REPORTED_LATER = ('os_error_code', 'No space left on device', 'Permission denied',
                   'Read-only file system', 'Disk quota exceeded')


class _DropRecords(py_logging.Filter):
  """Drops INFO records a user cannot act on, and Orbax's copies of errors the main thread
  reports; other warnings and errors always pass."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    from_orbax = f'{os.sep}orbax{os.sep}' in record.pathname
    if record.levelno >= py_logging.WARNING:
      if not from_orbax or record.levelno < py_logging.ERROR:
        return True
      text = str(record.msg) + (repr(record.exc_info[1]) if record.exc_info else '')
      return not any(s in text for s in _REPORTED_LATER)
    # Orbax narrates every save and restore step.
    if from_orbax:
      return False
    # JAX tries every backend it knows; a CPU or GPU host has no libtpu, which is expected.
    # A backend that fails loudly (a broken GPU plugin) is an exception, not this record.
    return not str(record.msg).startswith('Unable to initialize backend')


def _ignore_closed_event_loops(hook):
  """``sys.excepthook`` without the 'Event loop is closed' traces of a failed Orbax save.

  TensorStore's callbacks print them (through the hook) for every pending write after a
  save failed; the failure itself is reported once, by the main thread.
  """
  def excepthook(kind, value, tb):
    if kind is RuntimeError and str(value) == 'Event loop is closed':
      return
    hook(kind, value, tb)
  return excepthook


def quiet_logs() -> None:
  """Filters the noise above out of absl's handler and JAX's logger; idempotent."""
  if not getattr(sys.excepthook, '_samplernn_quiet', False):
    sys.excepthook = _ignore_closed_event_loops(sys.excepthook)
    sys.excepthook._samplernn_quiet = True  # pylint: disable=protected-access
  # TensorFlow (PRiSM import) reads this when it is first imported: errors only.
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  for name in ('absl', 'jax._src.xla_bridge'):
    logger = py_logging.getLogger(name)
    if not any(isinstance(f, _DropRecords) for f in logger.filters):
      logger.addFilter(_DropRecords())


# ---------------------------------------------------------------------------------------
# One-line errors
# ---------------------------------------------------------------------------------------

# OSError codes with what a person does about them.
_OS_HINTS = {
    errno.ENOSPC: 'free some space or choose a folder on another disk',
    errno.EDQUOT: 'free some space or choose a folder on another disk',
    errno.EACCES: 'choose a folder you can write to',
    errno.EPERM: 'choose a folder you can write to',
    errno.EROFS: 'the file system is read-only; choose another folder',
    errno.EMFILE: 'too many open files; raise the limit (ulimit -n) or do less at once',
}


def _root_os_error(error: BaseException):
  """The first OSError with an errno in the chain of causes (Orbax wraps them)."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno is not None:
      return error
    error = error.__cause__ or error.__context__
  return None


# TensorStore (under Orbax) reports a system error as text: 'Failed writing: "PATH": ...
# No space left on device [os_error_code=\'28\']'.
_TENSORSTORE_OS_ERROR = re.compile(
    r'(?:Failed \w+|local file):? "(?P<path>[^"]+)".*?(?P<reason>[^:]+) '
    r"\[os_error_code='(?P<errno>\d+)'\]")


def _tensorstore_os_error(error: BaseException):
  for match in _TENSORSTORE_OS_ERROR.finditer(str(error)):
    code = int(match.group('errno'))
    return OSError(code, os.strerror(code), match.group('path'))
  return None


def describe(error: BaseException) -> str:
  """A one-line message for ``error``: its own for ours, file + reason + what to do for I/O."""
  os_error = _root_os_error(error) or _tensorstore_os_error(error)
  if os_error is not None and (os_error.errno in _OS_HINTS or not str(error).strip()):
    where = f'{os_error.filename}: ' if os_error.filename else ''
    hint = _OS_HINTS.get(os_error.errno)
    return f'{where}{os_error.strerror}' + (f'; {hint}.' if hint else '.')
  text = str(error)
  if isinstance(error, (KeyError, AttributeError)) and error.args:
    text = str(error.args[0])  # Not the repr that str() of a KeyError gives.
  if len(text) > 1 and text[0] == text[-1] and text[0] in '\'"':
    try:  # ml_collections passes on the repr of an inner KeyError.
      text = str(ast.literal_eval(text))
    except (ValueError, SyntaxError):
      pass
  return ' '.join(text.split()) or type(error).__name__


def fail(program_name: str, error) -> None:
  """Prints ``program_name: message`` on stderr and exits with status 1."""
  message = error if isinstance(error, str) else describe(error)
  print(f'{program_name}: {message}', file=sys.stderr, flush=True)
  sys.exit(1)


def check_writable(directory: str, flag: str) -> None:
  """Raises OSError naming ``directory`` and ``flag`` unless a file can be created there.

  A real probe, not ``os.access``: it also catches read-only mounts and full quotas.
  """
  try:
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryFile(dir=directory):
      pass
  except OSError as e:
    raise OSError(e.errno, f'{e.strerror} (the folder of {flag})', directory) from None


def run(main: Callable, program_name: str,
        errors: tuple = (FileNotFoundError, ValueError, OSError)) -> None:
  """``app.run(main)`` with quiet logs; ``errors`` end the program with one line.

  Anything else is a bug and keeps its traceback.
  """
  quiet_logs()

  def parse(argv):
    try:
      return flags.FLAGS(argv)
    except SystemExit as e:
      # absl's --help exits with status 1; asking for help is not a failure.
      if e.code == 1 and set(argv[1:]) & {'--help', '--helpshort', '--helpfull', '-h', '-?'}:
        sys.exit(0)
      raise
    except BrokenPipeError:  # --help piped into head: the reader has what it wanted.
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
      sys.exit(0)
    except flags.Error as e:  # A missing, unknown or malformed flag.
      fail(program_name, f'{describe(e)} (see --help).')
    except Exception as e:  # pylint: disable=broad-except
      # A --config file that does not load, or --config.x.y naming no field: the error
      # comes from the file or ml_collections, never from this program.
      fail(program_name, f'bad flags: {describe(e)}')

  def guarded(argv):
    try:
      return main(argv)
    except app.UsageError as e:
      fail(program_name, f'{e} (see --help).')  # Not absl's usage text: one line.
    except errors as e:
      fail(program_name, e)
  app.run(guarded, flags_parser=parse)
