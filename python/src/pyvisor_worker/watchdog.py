"""Parent watchdog: a daemon thread that exits the process when its parent is gone."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger("pyvisor_worker.watchdog")


def start(parent_pid: int, cleanup: Callable[[], None], interval: float = 0.2) -> threading.Thread:
    """Poll ``os.getppid()`` every ``interval`` seconds; when it is no longer ``parent_pid``,
    log a warning, run ``cleanup`` and ``os._exit(0)``. Works even if the event loop is wedged."""

    def watch() -> None:
        stop = threading.Event()
        while os.getppid() == parent_pid:
            stop.wait(interval)
        try:
            log.warning("parent process %d is gone; exiting", parent_pid)
            cleanup()
        finally:
            os._exit(0)

    thread = threading.Thread(target=watch, name="pyvisor-parent-watchdog", daemon=True)
    thread.start()
    return thread
