"""Child processes that die with their parent.

A parent killed with -9 runs no cleanup: it cannot stop its children, so each child arranges
its own end. The parent starts it with ``child_env()``; the child calls ``die_with_parent()``
first thing (a pool's initializer calls ``tie_to_parent``). On Linux the kernel then sends
it a signal the moment the parent dies (``prctl(PR_SET_PDEATHSIG)``): SIGTERM for a search
worker, which checkpoints and exits as on any SIGTERM; SIGKILL for prepare's workers, which
have nothing to save. Elsewhere a thread watches the parent's PID.
"""

import ctypes
import os
import signal
import sys
import threading
import time

PARENT_ENV = 'SAMPLERNN_PARENT_PID'
_PR_SET_PDEATHSIG = 1  # From <linux/prctl.h>.


def child_env(env: dict) -> dict:
  """``env`` for a child that ``die_with_parent`` ties to this process."""
  return {**env, PARENT_ENV: str(os.getpid())}


def die_with_parent(signum: int = signal.SIGTERM) -> None:
  """In a child started with ``child_env``: ``signum`` arrives when the parent is gone.

  Does nothing in a process not started so. The variable is consumed, so this process's own
  children are not tied to its parent.
  """
  parent = os.environ.pop(PARENT_ENV, None)
  if parent is not None and parent.isdigit():
    tie_to_parent(int(parent), signum)


def tie_to_parent(parent: int, signum: int) -> None:
  """This process gets ``signum`` as soon as process ``parent``, its parent, is gone."""
  if sys.platform.startswith('linux'):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
  else:

    def watch():
      while os.getppid() == parent:
        time.sleep(0.2)
      os.kill(os.getpid(), signum)

    threading.Thread(target=watch, daemon=True).start()
  if os.getppid() != parent:  # The parent died before the request took hold.
    os.kill(os.getpid(), signum)
