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
    shm_in_fd: int | None = None
    """The pool's input arena (inherited, mapped read-only); None: payloads travel in frames."""
    shm_out_fd: int | None = None
    """This worker's output arena (inherited, mapped read-write)."""
    shm_threshold: int = 64 * 1024
    """Payloads of at least this many bytes go through shared memory."""
    shm_max_payload: int = 2 * 1024 * 1024 * 1024
    """The largest payload, in bytes, through shared memory."""
    shm_retain: int = 0
    """Bytes at the start of the output arena whose pages stay allocated when free."""
    shm_trim_after: float = 0.0
    """Seconds before free pages above ``shm_retain`` go back to the system (0: never)."""
