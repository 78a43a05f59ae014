"""The Unix socket file's lifecycle: private directory, stale-file removal, cleanup."""

from __future__ import annotations

import contextlib
import os


def prepare(path: str) -> None:
    """Create the socket's parent directory (0700) if missing and remove a stale socket file."""
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        os.makedirs(parent, mode=0o700, exist_ok=True)
        os.chmod(parent, 0o700)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def remove(path: str | None, remove_dir: bool) -> None:
    """Unlink the socket file and, with ``remove_dir``, its parent directory; ignore errors."""
    if not path:
        return
    with contextlib.suppress(OSError):
        os.unlink(path)
    if remove_dir:
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))
