"""Worker settings, as given on the command line."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
DEFAULT_SHUTDOWN_GRACE = 5.0
DEFAULT_THREADS = 32


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Everything a worker needs to serve; ``socket`` None means TCP on 127.0.0.1 with ``token``."""

    tools: tuple[str, ...] = ()
    socket: str | None = None
    token: str | None = field(default=None, repr=False)
    worker_id: str = ""
    parent_pid: int | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    threads: int = DEFAULT_THREADS
    remove_socket_dir: bool = False
    log_level: str = "info"
    log_fd: int | None = None
    callbacks: tuple[str, ...] = ()
    """Names of the Go callbacks the host serves (``$PYVISOR_CALLBACKS``, a JSON array)."""
