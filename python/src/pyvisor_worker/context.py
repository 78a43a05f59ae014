"""Per-call state: context variables for log correlation, and the ToolContext given to tools."""

from __future__ import annotations

import asyncio
import logging
import threading
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from pyvisor_worker.gocall import GoError

if TYPE_CHECKING:
    from pyvisor_worker.gocall import GoCaller
    from pyvisor_worker.shm import Shared

correlation_id_var: ContextVar[str] = ContextVar("pyvisor_correlation_id", default="")
"""Correlation id of the call being served ("" outside a call); set once per RPC task."""

trace_id_var: ContextVar[str] = ContextVar("pyvisor_trace_id", default="")
span_id_var: ContextVar[str] = ContextVar("pyvisor_span_id", default="")
#: The version of the tool code running the call (docs/upgrades.md), on its log lines.
code_version_var: ContextVar[str] = ContextVar("pyvisor_code_version", default="")
"""Fallback trace fields for log lines written outside any valid OpenTelemetry span."""


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class ToolContext:
    """What a tool sees of its call. Declare a parameter annotated ``ToolContext`` to get it.

    ``session`` is the session's mutable state dict (None without a session). ``cancelled`` and
    ``wait_cancelled`` are safe from any thread: a sync tool cannot be interrupted, so it should
    poll them to stop early when its call is cancelled.
    """

    __slots__ = (
        "_cancel",
        "_go",
        "_shared",
        "buffers",
        "correlation_id",
        "logger",
        "metadata",
        "payload",
        "session",
        "session_id",
        "tool",
        "worker_id",
    )

    def __init__(
        self,
        *,
        tool: str,
        correlation_id: str = "",
        worker_id: str = "",
        session_id: str | None = None,
        session: dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
        payload: bytes | memoryview = b"",
        logger: logging.Logger | None = None,
        shared: Shared | None = None,
    ) -> None:
        self.tool = tool
        self.correlation_id = correlation_id
        self.worker_id = worker_id
        self.session_id = session_id
        self.session = session
        self.metadata: dict[str, str] = metadata if metadata is not None else {}
        self.payload = payload
        """The call's raw bytes (Go's ``WithPayload``), read-only: ``bytes`` when they came in
        the frame, a ``memoryview`` over shared memory when they came that way (large ones).
        Valid during the call only: copy what must outlive it (``bytes(ctx.payload)``)."""
        self.logger = logger if logger is not None else logging.getLogger(f"pyvisor_worker.tool.{tool}")
        self._cancel = threading.Event()
        self._go: GoCaller | None = None
        self._shared = shared
        self.buffers: set[int] = set()
        """Output-arena regions ``buffer`` allocated for this call and not yet returned."""

    @property
    def cancelled(self) -> bool:
        """True once the call was cancelled (client cancel, deadline, or shutdown)."""
        return self._cancel.is_set()

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Block up to ``timeout`` seconds for cancellation; return True if cancelled."""
        return self._cancel.wait(timeout)

    def call_go(self, name: str, /, **kwargs: Any) -> Any:
        """Call the Go callback ``name`` with ``kwargs`` (JSON-encoded) and return its result.

        In an async tool (or async generator), await it: ``await ctx.call_go(...)``. In a
        sync tool (which runs in a worker thread) it blocks until the result is back. The Go
        function runs in this call's trace, with its correlation id and no more than its
        remaining time; when this call is cancelled, so is the callback (an async tool gets
        ``CancelledError``, a sync tool ``GoError`` of kind ``cancelled``).

        Raises ``pyvisor_worker.GoError``: at once for a name the host did not register
        (kind ``unknown_callback``) or arguments that are not JSON; with the Go side's kind
        (``invalid_argument``, ``deadline_exceeded``, ``panic``, ``error``, ...) otherwise.
        """
        go = self._go
        if go is None:
            raise GoError(GoError.UNAVAILABLE,
                          "callbacks travel on the runtime's channel; this call did not come on "
                          "it (a unary Execute RPC, or a ToolContext made by hand)", name)
        return go.call(name, kwargs)

    def buffer(self, size: int) -> memoryview:
        """A writable ``memoryview`` of ``size`` bytes to build the result in: return it (or
        a numpy array over it, ``numpy.frombuffer(buf, dtype)``, or a slice) and it reaches Go
        with no copy, through shared memory. Valid until the call ends.

        On the runtime's channel a buffer of the shared-memory threshold's size or more lies
        in this worker's output arena; if the arena is full it waits for Go to release space
        (raising ``InterruptedError`` once the call is cancelled). Smaller buffers, and any
        buffer outside the channel, are plain memory, copied when returned. Call it from a
        sync tool, or from an async tool between awaits (it never waits on the loop: a full
        arena there raises ``BufferError``).
        """
        shared = self._shared
        if size < 0:
            raise ValueError(f"buffer size must not be negative, got {size}")
        if shared is None or size < shared.threshold:
            return memoryview(bytearray(size))
        shared.check_size(size)
        arena = shared.output
        if _on_loop():
            off = arena.try_alloc(size)
            if off is None:
                raise BufferError(
                    f"the worker's shared memory for results is full ({arena.size} bytes): "
                    "Go has not released earlier results yet")
        else:
            off = arena.alloc_blocking(size, self._cancel.is_set)
        self.buffers.add(off)
        return arena.view[off:off + size]

    def in_shared_memory(self, obj: Any) -> bool:
        """True when the bytes of ``obj`` (a memoryview, a numpy array...) lie in shared
        memory: this call's payload, or a buffer from ``buffer``. How to check that an array
        was built without a copy."""
        shared = self._shared
        return shared is not None and shared.contains(obj)

    def end(self) -> None:
        """Called by the worker when the call is over: the payload view is released where
        nothing else holds it, and buffers that were not returned are freed."""
        if isinstance(self.payload, memoryview):
            try:
                self.payload.release()
            except BufferError:
                pass  # an array over it still lives: it keeps the view (stale once reused)
        if self._shared is not None:
            for off in self.buffers:
                self._shared.output.free(off)
        self.buffers.clear()

    def bind_go(self, go: GoCaller) -> None:
        """Let this call make callbacks through ``go`` (called by the worker)."""
        self._go = go

    def cancel(self) -> None:
        """Set the cancellation flag (called by the worker; idempotent)."""
        self._cancel.set()

    def __repr__(self) -> str:
        return (
            f"ToolContext(tool={self.tool!r}, correlation_id={self.correlation_id!r}, "
            f"session_id={self.session_id!r}, cancelled={self.cancelled})"
        )
