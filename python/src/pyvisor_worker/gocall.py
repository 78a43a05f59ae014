"""Python tools call Go: ``ctx.call_go(name, **kwargs)``, over the worker's channel.

A callback is a frame on the channel tagged with the tool call's id; the Go function runs
with the call's correlation id, under this side's ``callback <name>`` CLIENT span, with no
more than the call's remaining time, and its result (JSON) or error comes back as a reply
frame. Cancelling the tool call (the host's cancel, its deadline, shutdown) withdraws its
callbacks, which cancels the Go function's context.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from opentelemetry import propagate, trace
from opentelemetry.trace import Status, StatusCode

from pyvisor_worker import arrays as arraysmod
from pyvisor_worker._proto import worker_pb2 as pb
from pyvisor_worker.shm import Shared
from pyvisor_worker.wire import go_error_kind

if TYPE_CHECKING:
    from pyvisor_worker.channel import Channel

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_CLIENT = trace.SpanKind.CLIENT


class GoError(Exception):
    """A Go callback failed. ``kind`` says how (one of the ``KINDS``), ``message`` is the Go
    error's text and ``callback`` the callback's name.

    Raised by ``ctx.call_go``; a tool that lets it propagate fails with a ToolError of type
    ``pyvisor_worker.GoError``.
    """

    # The kinds, as worker.proto's GoErrorKind defines their strings.
    UNKNOWN_CALLBACK: ClassVar[str] = go_error_kind(pb.GO_ERROR_KIND_UNKNOWN_CALLBACK)
    INVALID_ARGUMENT: ClassVar[str] = go_error_kind(pb.GO_ERROR_KIND_INVALID_ARGUMENT)
    DEADLINE_EXCEEDED: ClassVar[str] = go_error_kind(pb.GO_ERROR_KIND_DEADLINE_EXCEEDED)
    CANCELLED: ClassVar[str] = go_error_kind(pb.GO_ERROR_KIND_CANCELLED)
    MESSAGE_TOO_LARGE: ClassVar[str] = go_error_kind(pb.GO_ERROR_KIND_MESSAGE_TOO_LARGE)
    UNAVAILABLE: ClassVar[str] = go_error_kind(pb.GO_ERROR_KIND_UNAVAILABLE)
    PANIC: ClassVar[str] = go_error_kind(pb.GO_ERROR_KIND_PANIC)
    ERROR: ClassVar[str] = go_error_kind(pb.GO_ERROR_KIND_ERROR)
    KINDS: ClassVar[frozenset[str]] = frozenset(
        go_error_kind(v) for v in pb.GoErrorKind.values() if v != pb.GO_ERROR_KIND_UNSPECIFIED
    )

    def __init__(self, kind: str, message: str, callback: str = "") -> None:
        super().__init__(f"go callback '{callback}' failed ({kind}): {message}")
        self.kind = kind
        self.message = message
        self.callback = callback


GoError.__module__ = "pyvisor_worker"  # its ToolError type reads pyvisor_worker.GoError


class GoCaller:
    """Makes the callbacks of one tool call on its channel. Created on the event loop; used
    from the loop (async tools: ``call`` returns an awaitable) or from a tool thread (sync
    tools: ``call`` blocks)."""

    __slots__ = ("_call_id", "_channel", "_loop", "_loop_thread")

    def __init__(self, channel: Channel, call_id: int) -> None:
        self._channel = channel
        self._call_id = call_id
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def call(self, name: str, kwargs: dict[str, Any]) -> Any:
        if threading.get_ident() == self._loop_thread:
            return self._call_async(name, kwargs)
        return self._call_blocking(name, kwargs)

    def _arguments(self, name: str, kwargs: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        """The JSON arguments of a callback the worker can make, and its array arguments;
        GoError otherwise."""
        names = self._channel.callbacks
        if name not in names:
            registered = ", ".join(sorted(names)) or "none"
            raise GoError(GoError.UNKNOWN_CALLBACK,
                          f"no Go callback '{name}' (registered: {registered})", name)
        rest, arrays = arraysmod.split(kwargs)
        try:
            args = _ENCODER.encode(rest).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise GoError(GoError.INVALID_ARGUMENT,
                          f"arguments are not JSON-encodable: {exc}", name) from None
        limit = self._channel.max_message_bytes
        if len(args) > limit:
            raise GoError(GoError.MESSAGE_TOO_LARGE,
                          f"arguments are {len(args)} bytes, over the limit of {limit} bytes", name)
        return args, arrays

    @contextlib.contextmanager
    def _span(self, name: str) -> Iterator[dict[str, str]]:
        """The callback's CLIENT span around the block (none untraced), marked as failed when
        the block raises; yields the carrier that hands the span to Go."""
        tracer = self._channel.tracer
        if tracer is None:
            yield {}
            return
        span = tracer.start_span(f"callback {name}", kind=_CLIENT, attributes={
            "pyvisor.callback": name,
            "pyvisor.correlation_id": self._channel.correlation_id(self._call_id),
        })
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        try:
            yield carrier
        except BaseException as exc:
            _failed(span, exc)
            raise
        finally:
            span.end()

    async def _call_async(self, name: str, kwargs: dict[str, Any]) -> Any:
        args, arrays = self._arguments(name, kwargs)
        with self._span(name) as carrier:
            reply = await self._channel.callback(self._call_id, name, args, carrier, arrays)
            return _outcome(name, reply, self._channel.shared)

    def _call_blocking(self, name: str, kwargs: dict[str, Any]) -> Any:
        args, arrays = self._arguments(name, kwargs)
        with self._span(name) as carrier:
            try:
                future = asyncio.run_coroutine_threadsafe(
                    self._channel.callback(self._call_id, name, args, carrier, arrays),
                    self._loop)
            except RuntimeError:  # the loop is closed: the worker is stopping
                raise GoError(GoError.UNAVAILABLE, "the worker is stopping", name) from None
            try:
                reply = future.result()
            except concurrent.futures.CancelledError:
                raise GoError(GoError.CANCELLED, "the tool call was cancelled", name) from None
            return _outcome(name, reply, self._channel.shared)


def _outcome(name: str, reply: Any, shared: Shared | None) -> Any:
    """The callback's result, decoded (its arrays read in place, valid for the call); GoError
    when it failed."""
    if reply.WhichOneof("outcome") == "error":
        e = reply.error
        raise GoError(e.kind or GoError.ERROR, e.message, e.callback or name)
    value = json.loads(reply.json)
    if not reply.arrays:
        return value
    arrays: dict[str, Any] = {}
    for array in reply.arrays:
        try:
            arrays[array.name] = arraysmod.read(array, shared)
        except ValueError as exc:
            raise GoError(GoError.INVALID_ARGUMENT, f"callback result: {exc}", name) from None
    if "" in arrays:
        return arrays[""]
    if value is None:
        value = {}
    if isinstance(value, dict):
        value.update(arrays)
    return value


def _failed(span: Any, exc: BaseException) -> None:
    if not span.is_recording():
        return
    if isinstance(exc, GoError):
        span.set_attribute("pyvisor.callback.error_kind", exc.kind)
        span.set_status(Status(StatusCode.ERROR, f"{exc.kind}: {exc.message}"))
    elif isinstance(exc, asyncio.CancelledError):
        span.set_status(Status(StatusCode.ERROR, "cancelled"))
    else:
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
