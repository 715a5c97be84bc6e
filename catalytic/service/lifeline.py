"""Child processes end with their parent, however the parent ends.

A job worker, compute process or parse process whose server process was killed (``kill -9``, the OOM killer)
would otherwise compute on, holding its memory, until its work was done and it found its pipe closed: measured
at 7 to 12 s and about 1 GB after a kill. :func:`die_with_parent`, called first thing in a child, makes sure it
stops at once, by two means:

* On Linux, the kernel's parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``): the child is killed the
  moment the thread that started it ends. Every pool here starts its children from the event-loop thread.
* Everywhere, a watcher thread waits on the pipe that :mod:`multiprocessing` keeps from each parent to its
  ``spawn`` child: the parent holds the write end for as long as it lives, so end of file on it means the parent
  is gone, and the child exits at once (``os._exit``, no clean-up of work that has lost its requester).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["ORPHAN_EXIT_STATUS", "die_with_parent", "run_child"]

log = logging.getLogger("catalytic.service")

ORPHAN_EXIT_STATUS = 70
"""Exit status of a child that ended because its parent had."""

_PR_SET_PDEATHSIG = 1


def _set_parent_death_signal(signum: int) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(ORPHAN_EXIT_STATUS)


def die_with_parent() -> None:
    """End this process when the process that started it ends; call it first in a ``multiprocessing`` child.

    Does nothing in a process not started by :mod:`multiprocessing`.

    Examples
    --------
    >>> ctx = multiprocessing.get_context("spawn")
    >>> ctx.Process(target=die_with_parent).start()  # doctest: +SKIP
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    if sys.platform.startswith("linux"):
        _set_parent_death_signal(signal.SIGKILL)
    if parent.pid is not None and os.getppid() != parent.pid:
        os._exit(ORPHAN_EXIT_STATUS)  # the parent died before the signal was armed
    sentinel = getattr(parent, "sentinel", None)
    if sentinel is not None:
        threading.Thread(target=_watch, args=(sentinel,), name="catalytic-lifeline", daemon=True).start()


def run_child(target: Callable[..., Any], *args: Any) -> None:
    """Body of a child process: :func:`die_with_parent`, then ``target(*args)``.

    Pass it as a ``multiprocessing.Process`` target, with the real target first among the arguments.
    """
    die_with_parent()
    target(*args)
