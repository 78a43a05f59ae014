"""Per-call state: context variables for log correlation, and the ToolContext given to tools."""

from __future__ import annotations

import logging
import threading
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from pyvisor_worker.gocall import GoError

if TYPE_CHECKING:
    from pyvisor_worker.gocall import GoCaller

correlation_id_var: ContextVar[str] = ContextVar("pyvisor_correlation_id", default="")
"""Correlation id of the call being served ("" outside a call); set once per RPC task."""

trace_id_var: ContextVar[str] = ContextVar("pyvisor_trace_id", default="")
span_id_var: ContextVar[str] = ContextVar("pyvisor_span_id", default="")
"""Fallback trace fields for log lines written outside any valid OpenTelemetry span."""


class ToolContext:
    """What a tool sees of its call. Declare a parameter annotated ``ToolContext`` to get it.

    ``session`` is the session's mutable state dict (None without a session). ``cancelled`` and
    ``wait_cancelled`` are safe from any thread: a sync tool cannot be interrupted, so it should
    poll them to stop early when its call is cancelled.
    """

    __slots__ = (
        "_cancel",
        "_go",
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
        payload: bytes = b"",
        logger: logging.Logger | None = None,
    ) -> None:
        self.tool = tool
        self.correlation_id = correlation_id
        self.worker_id = worker_id
        self.session_id = session_id
        self.session = session
        self.metadata: dict[str, str] = metadata if metadata is not None else {}
        self.payload = payload
        self.logger = logger if logger is not None else logging.getLogger(f"pyvisor_worker.tool.{tool}")
        self._cancel = threading.Event()
        self._go: GoCaller | None = None

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
