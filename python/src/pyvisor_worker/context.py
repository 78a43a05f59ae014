"""Per-call state: context variables for log correlation, and the ToolContext given to tools."""

from __future__ import annotations

import logging
import threading
from contextvars import ContextVar
from typing import Any

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

    @property
    def cancelled(self) -> bool:
        """True once the call was cancelled (client cancel, deadline, or shutdown)."""
        return self._cancel.is_set()

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Block up to ``timeout`` seconds for cancellation; return True if cancelled."""
        return self._cancel.wait(timeout)

    def cancel(self) -> None:
        """Set the cancellation flag (called by the worker; idempotent)."""
        self._cancel.set()

    def __repr__(self) -> str:
        return (
            f"ToolContext(tool={self.tool!r}, correlation_id={self.correlation_id!r}, "
            f"session_id={self.session_id!r}, cancelled={self.cancelled})"
        )
