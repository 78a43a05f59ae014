"""The worker's descendants: kept under it, and killed with it.

``become_subreaper`` makes the worker a child subreaper (Linux): a process a tool starts
that loses its parent, one that double-forks or starts its own session included, is
reparented to the worker instead of init, so it stays in the worker's process tree. Whoever
ends the worker (its own exit, its parent watchdog, or the Go side before a SIGKILL) then
finds every descendant by walking ``/proc`` and kills it. Orphans reparented to the worker
are not reaped while it lives (that would race the tools' own ``wait``): they stay zombies,
a process-table entry each, until the worker exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys

log = logging.getLogger("pyvisor_worker.reaper")

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process its descendants' subreaper; False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _parents() -> dict[int, int]:
    """Every process's parent, read from /proc (empty where there is no /proc)."""
    out: dict[int, int] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1:
            out[int(name)] = int(fields[1])
    return out


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` in the process tree, parents before children."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    out: list[int] = []
    todo = list(children.get(pid, ()))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def kill_descendants() -> int:
    """SIGKILL every descendant of this process; return how many were signalled."""
    killed = 0
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    if killed:
        log.info("killed the processes tools left behind", extra={"processes": killed})
    return killed
