"""What every ``samplernn-*`` command shares: its own flags in ``--help``, the ``--config``
flag, quiet logs, and one line on stderr (no traceback) for every mistake a person can fix.

A command is a module of ``samplernn_jax.commands``: flags defined at module level,
``main(argv)`` that raises on a mistake, and ``run()`` that is ``cli.run(main,
'samplernn-NAME')``. Only a program imports a command module (library code never does), so
two commands' flags of one name (``--workdir``) never meet in one process.
"""

import ast
import errno
import importlib.resources
import logging as py_logging
import os
import re
import sys
import threading
from typing import Callable, Optional

from absl import app
from absl import flags

import samplernn_jax
from samplernn_jax.compat import prism_flags

flags.DEFINE_bool('version', False, "Print the program's version and exit.")


def _own_flags_in_help(module_name: str) -> None:
  """Lists the flags that ``module_name`` defined in this program's ``--help``.

  absl's ``--help`` lists the flags of the module named ``sys.argv[0]`` only: a console
  script's path, not the command module, whose flags would show under ``--helpfull`` alone,
  among Orbax's and absl's. (Run as ``python -m``, the module is ``__main__`` and absl
  already files its flags under ``sys.argv[0]``.)
  """
  flags.FLAGS.register_flag_by_module(sys.argv[0], flags.FLAGS['version'])
  if module_name == '__main__':
    return
  for flag in flags.FLAGS.get_flags_for_module(module_name):
    flags.FLAGS.register_flag_by_module(sys.argv[0], flag)


# ---------------------------------------------------------------------------------------
# --config
# ---------------------------------------------------------------------------------------

# A command defines ``config_flags.DEFINE_config_file('config', None, ...)`` and passes its
# default file to ``run``. With a default, config_flags would load it, with the
# ``--config.x=y`` overrides it finds in sys.argv, as the flag is defined: at import, where
# a typo is a traceback. ``run`` names the default on the command line instead, so absl's
# parse loads it, and a mistake is reported as one line.
_CONFIG_ARG = re.compile(r'^--?config(=|$)')


def _with_default_config(argv: list, config_file: str) -> list:
  if any(_CONFIG_ARG.match(arg) for arg in argv[1:]):
    return [argv[0]] + [_named_config(arg) for arg in argv[1:]]
  # First: config_flags refuses an override that comes before --config.
  return [argv[0], f'--config={config_file}', *argv[1:]]


def shipped(name: str, folder: str = '') -> Optional[str]:
  """The path of the config ``name`` (``default``, ``demo``, ...) shipped in the package's
  ``configs`` (``folder``: a subfolder such as ``spaces``), or None."""
  if not re.fullmatch(r'\w+', name):
    return None
  path = importlib.resources.files('samplernn_jax.configs').joinpath(folder, f'{name}.py')
  return str(path) if path.is_file() else None


def shipped_names(folder: str = '') -> list:
  root = importlib.resources.files('samplernn_jax.configs').joinpath(folder)
  return sorted(
    p.name[:-3] for p in root.iterdir() if p.name.endswith('.py') and not p.name.startswith('_')
  )


def _named_config(arg: str) -> str:
  """``--config=NAME`` as the shipped config's path, unless NAME is a file here."""
  match = re.fullmatch(r'(--?config=)(\w+)', arg)
  if not match or os.path.exists(match.group(2)):
    return arg
  return match.group(1) + (shipped(match.group(2)) or match.group(2))


def loaded_config(holder: flags.FlagHolder):
  """The ``--config`` of ``holder``, or ValueError naming a file that does not load."""
  try:
    config = holder.value
    config.keys()  # A file that failed to load raises on first use.
  except OSError:
    path = flags.FLAGS[holder.name].config_filename
    raise ValueError(
      f'--{holder.name}={path}: no such config file; pass a path or one of '
      f'{", ".join(shipped_names())} (e.g. --config=demo).'
    ) from None
  return config


def _flag_error(error: Exception, argv: list) -> str:
  """A flag absl could not parse, a config file that does not load, or ``--config.a.b``
  naming no field, in one line."""
  text = describe(error)
  for arg in argv[1:]:
    name = arg.split('=', 1)[0]
    if name.startswith('--config.') and f"'{name.rsplit('.', 1)[-1]}'" in text:
      return f'{name}: no such config field ({text})'
  if any(_CONFIG_ARG.match(arg) for arg in argv[1:]):
    return f'--config: cannot load it ({text})'
  return f'bad flags: {text}'


# ---------------------------------------------------------------------------------------
# Quiet logs
# ---------------------------------------------------------------------------------------

# A system error in an Orbax background thread (a full disk, say) is logged there with
# its traceback, once per thread, and raised again in the main thread, which reports it.
_REPORTED_LATER = (
  'os_error_code',
  'No space left on device',
  'Permission denied',
  'Read-only file system',
  'Disk quota exceeded',
)


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


def _quiet_full_disk_in_threads(hook):
  """``threading.excepthook`` without the traces of a full disk in a writer's thread.

  TensorBoard's event writer and Orbax's savers write in threads of their own: a full disk
  fails each of them with a traceback, while the main thread reports it once, in one line.
  """

  def excepthook(args):
    if isinstance(args.exc_value, OSError) and args.exc_value.errno in _FULL_DISK:
      return
    hook(args)

  excepthook._samplernn_quiet = True  # pylint: disable=protected-access
  return excepthook


def quiet_logs() -> None:
  """Filters the noise above out of absl's handler and JAX's logger; idempotent."""
  if not getattr(sys.excepthook, '_samplernn_quiet', False):
    sys.excepthook = _ignore_closed_event_loops(sys.excepthook)
    sys.excepthook._samplernn_quiet = True  # pylint: disable=protected-access
  if not getattr(threading.excepthook, '_samplernn_quiet', False):
    threading.excepthook = _quiet_full_disk_in_threads(threading.excepthook)
  # TensorFlow (PRiSM import) reads this when it is first imported: errors only.
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  for name in ('absl', 'jax._src.xla_bridge'):
    logger = py_logging.getLogger(name)
    if not any(isinstance(f, _DropRecords) for f in logger.filters):
      logger.addFilter(_DropRecords())


# ---------------------------------------------------------------------------------------
# One-line errors
# ---------------------------------------------------------------------------------------

_FULL_DISK = (errno.ENOSPC, errno.EDQUOT)

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
  r"\[os_error_code='(?P<errno>\d+)'\]"
)


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


def _fail(program_name: str, error) -> None:
  """Prints ``program_name: message`` on stderr and exits with status 1."""
  message = error if isinstance(error, str) else describe(error)
  print(f'{program_name}: {message}', file=sys.stderr, flush=True)
  sys.exit(1)


def run(
  main: Callable,
  program_name: str,
  errors: tuple = (FileNotFoundError, ValueError, OSError),
  config_file: Optional[str] = None,
) -> None:
  """``app.run(main)`` with quiet logs; ``errors`` end the program with one line.

  ``config_file``: the default of the command's ``--config`` (see above). Anything else
  is a bug and keeps its traceback.
  """
  if '--version' in sys.argv[1:]:  # Before parsing: it needs no other flag, --workdir included.
    print(f'{program_name} {samplernn_jax.__version__}')
    sys.exit(0)
  quiet_logs()
  _own_flags_in_help(main.__module__)
  if config_file is not None:
    sys.argv = _with_default_config(sys.argv, config_file)
    flags.FLAGS['config'].default_as_str = repr(config_file)  # What --help shows.

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
      # A PRiSM flag typed by habit gets its name here, not absl's guess at a similar one.
      _fail(
        program_name,
        prism_flags.unknown_flag_message(program_name, argv) or f'{describe(e)} (see --help).',
      )
    except Exception as e:  # pylint: disable=broad-except
      # A --config file that does not load, or --config.x.y naming no field: the error
      # comes from the file or ml_collections, never from this program.
      _fail(program_name, _flag_error(e, argv))

  def guarded(argv):
    try:
      return main(argv)
    except app.UsageError as e:
      _fail(program_name, f'{e} (see --help).')  # Not absl's usage text: one line.
    except errors as e:
      _fail(program_name, e)

  app.run(guarded, flags_parser=parse)
