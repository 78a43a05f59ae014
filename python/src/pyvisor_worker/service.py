"""The WorkerService servicer: runs tools for Execute/ExecuteStream, plus sessions and heartbeats.

A tool's own exception becomes a ToolError in the response; contract violations are gRPC errors
tagged with a ``pyvisor-error`` reason (see errors.py). Cancellation (client cancel, deadline,
shutdown) raises CancelledError inside async tools, closes generators and sets the ToolContext
flag of sync tools; it always propagates as cancellation, never as a ToolError.
"""

from __future__ import annotations

import asyncio
import concurrent.futures.thread
import contextlib
import contextvars
import json
import logging
import os
import platform
import secrets
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor
from typing import Any

import grpc
from opentelemetry import baggage, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.trace import Status, StatusCode

from pyvisor_worker import __version__
from pyvisor_worker._proto import worker_pb2 as pb
from pyvisor_worker._proto import worker_pb2_grpc as pb_grpc
from pyvisor_worker.context import ToolContext, correlation_id_var
from pyvisor_worker.errors import (
    INVALID_ARGUMENT,
    UNKNOWN_SESSION,
    UNKNOWN_TOOL,
    WRONG_CALL_KIND,
    abort,
)
from pyvisor_worker.tools import Kind, Tool

PROTOCOL_VERSION = 1

log = logging.getLogger("pyvisor_worker.service")

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_BINARY = (bytes, bytearray, memoryview)
_END = object()
_NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()
_BAGGAGE = W3CBaggagePropagator()


def exception_type_name(exc: BaseException) -> str:
    """``ValueError`` for builtins, ``module.QualName`` otherwise."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


# Frames of the machinery that runs a tool: a traceback shown to the caller starts at the
# tool's own code.
_MACHINERY_FILES = frozenset({__file__, concurrent.futures.thread.__file__})


def user_traceback(exc: BaseException) -> str:
    """The formatted traceback of ``exc`` without the worker's own leading frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in _MACHINERY_FILES:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


class _NotSerializable(Exception):
    pass


def _encode(tool: str, value: Any) -> Any:
    """Encode a returned/yielded value as a Result (bytes → payload with json null)."""
    if isinstance(value, _BINARY):
        return pb.Result(json=b"null", payload=bytes(value))
    try:
        return pb.Result(json=_ENCODER.encode(value).encode())
    except (TypeError, ValueError, RecursionError) as exc:
        raise _NotSerializable(
            f"result of tool '{tool}' is not JSON-serializable: {exc}"
        ) from exc


def _next_or_end(gen: Iterator[Any]) -> Any:
    return next(gen, _END)


def _baggage_correlation_id(metadata: Any) -> str:
    """The ``correlation_id`` entry of the W3C ``baggage`` metadata ("" if absent)."""
    for key, value in metadata:
        if key == "baggage":
            text = value if isinstance(value, str) else bytes(value).decode()
            found = baggage.get_baggage("correlation_id", _BAGGAGE.extract({"baggage": text}))
            return str(found) if found else ""
    return ""


def _mark_cancelled() -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("pyvisor.cancelled", True)


class WorkerServicer(pb_grpc.WorkerServiceServicer):
    """Serves ``tools``; sessions are owned by this instance.

    ``request_stop(grace_seconds)`` is called after a Shutdown reply has been sent.
    """

    def __init__(
        self,
        tools: Mapping[str, Tool],
        *,
        executor: Executor,
        worker_id: str = "",
        default_grace: float = 5.0,
        request_stop: Callable[[float], None] | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._tools = dict(tools)
        self._registered = ", ".join(sorted(self._tools)) or "none"
        self._executor = executor
        self._worker_id = worker_id
        self._default_grace = default_grace
        self._request_stop = request_stop
        self._sessions: dict[str, dict[str, Any]] = {}
        self._in_flight = 0
        self._pid = os.getpid()
        self._tracer = tracer

    @property
    def tool_names(self) -> list[str]:
        """Names of the served tools, sorted."""
        return sorted(self._tools)

    @property
    def in_flight(self) -> int:
        """Execute and ExecuteStream calls currently running."""
        return self._in_flight

    # --- call preparation -------------------------------------------------------------------

    async def _tool_for(self, request: Any, context: Any, streaming: bool) -> Tool:
        tool = self._tools.get(request.tool)
        if tool is None:
            await abort(
                context, grpc.StatusCode.NOT_FOUND, UNKNOWN_TOOL,
                f"unknown tool '{request.tool}' (registered: {self._registered})",
            )
        if tool.streaming != streaming:
            if tool.streaming:
                message = f"tool '{tool.name}' is a streaming tool; call it with ExecuteStream"
            else:
                message = f"tool '{tool.name}' is not a streaming tool; call it with Execute"
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, WRONG_CALL_KIND, message)
        return tool

    async def _arguments(
        self, tool: Tool, request: Any, context: Any, correlation_id: str
    ) -> tuple[dict[str, Any], ToolContext | None]:
        raw = request.arguments
        if raw:
            try:
                args = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                await abort(
                    context, grpc.StatusCode.INVALID_ARGUMENT, INVALID_ARGUMENT,
                    f"arguments for tool '{tool.name}' must be a JSON object ({exc})",
                )
        else:
            args = {}
        problem = tool.validator.validate(args)
        if problem is not None:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, INVALID_ARGUMENT, problem)
        session: dict[str, Any] | None = None
        session_id: str | None = request.session_id or None
        if session_id is not None:
            session = self._sessions.get(session_id)
            if session is None:
                await abort(
                    context, grpc.StatusCode.NOT_FOUND, UNKNOWN_SESSION,
                    f"unknown session '{session_id}'",
                )
        tctx: ToolContext | None = None
        if tool.context_param is not None:
            tctx = ToolContext(
                tool=tool.name,
                correlation_id=correlation_id,
                worker_id=self._worker_id,
                session_id=session_id,
                session=session,
                metadata=dict(request.metadata),
                payload=request.payload,
                logger=logging.getLogger(tool.func.__module__),
            )
            args[tool.context_param] = tctx
        return args, tctx

    @staticmethod
    def _correlation_id(request: Any, context: Any) -> str:
        """From the request, else metadata ``x-correlation-id``, else baggage ``correlation_id``;
        set as the call's context variable and on the server span."""
        cid: str = request.correlation_id
        if not cid:
            metadata = context.invocation_metadata() or ()
            for key, value in metadata:
                if key == "x-correlation-id":
                    cid = value if isinstance(value, str) else bytes(value).decode()
                    break
            else:
                cid = _baggage_correlation_id(metadata)
        correlation_id_var.set(cid)
        if cid:
            span = trace.get_current_span()
            if span.is_recording():
                span.set_attribute("pyvisor.correlation_id", cid)
        return cid

    def _tool_span(self, tool: str, correlation_id: str, session_id: str) -> Any:
        """The ``tool <name>`` span as the current span (a no-op without a tracer)."""
        if self._tracer is None:
            return _NO_SPAN
        attributes = {"pyvisor.tool": tool, "pyvisor.correlation_id": correlation_id}
        if session_id:
            attributes["pyvisor.session_id"] = session_id
        return self._tracer.start_as_current_span(
            f"tool {tool}",
            kind=trace.SpanKind.INTERNAL,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )

    def _tool_error(self, tool: str, exc: BaseException, correlation_id: str) -> Any:
        formatted = user_traceback(exc)
        span = trace.get_current_span()
        if span.is_recording():
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{exception_type_name(exc)}: {exc}"))
        log.error(
            "tool '%s' raised %s: %s", tool, exception_type_name(exc), exc,
            extra={"tool": tool, "exception": formatted},
        )
        if isinstance(exc, _NotSerializable):
            type_name, message = "TypeError", str(exc)
        else:
            type_name, message = exception_type_name(exc), str(exc)
        return pb.ToolError(
            tool=tool,
            type=type_name,
            message=message,
            traceback=formatted,
            correlation_id=correlation_id,
        )

    # --- Execute ----------------------------------------------------------------------------

    async def Execute(self, request: Any, context: Any) -> Any:
        tool, cid, args, tctx = await self._call(request, context, streaming=False)
        with self._running(tool, cid, request.session_id):
            return await self._execute(tool, args, tctx, cid)

    async def _call(
        self, request: Any, context: Any, *, streaming: bool
    ) -> tuple[Tool, str, dict[str, Any], ToolContext | None]:
        """The tool a call names, its correlation id, and its arguments (aborting the RPC
        with the matching status when any of them is wrong)."""
        tool = await self._tool_for(request, context, streaming=streaming)
        cid = self._correlation_id(request, context)
        args, tctx = await self._arguments(tool, request, context, cid)
        if log.isEnabledFor(logging.DEBUG):
            op = "execute stream" if streaming else "execute"
            log.debug("%s %s", op, tool.name, extra={"tool": tool.name})
        return tool, cid, args, tctx

    @contextlib.contextmanager
    def _running(self, tool: Tool, cid: str, session_id: str) -> Iterator[None]:
        """A call in flight (Heartbeat and Shutdown report how many), inside its tool span."""
        self._in_flight += 1
        try:
            with self._tool_span(tool.name, cid, session_id):
                yield
        finally:
            self._in_flight -= 1

    async def _execute(
        self, tool: Tool, args: dict[str, Any], tctx: ToolContext | None, cid: str
    ) -> Any:
        try:
            if tool.kind is Kind.ASYNC:
                value = await tool.func(**args)
            else:
                run: Callable[..., Any] = contextvars.copy_context().run
                future = self._executor.submit(run, tool.func, **args)
                try:
                    value = await asyncio.wrap_future(future)
                except asyncio.CancelledError:
                    future.cancel()
                    raise
            return pb.ExecuteResponse(result=_encode(tool.name, value))
        except asyncio.CancelledError:
            if tctx is not None:
                tctx.cancel()
            _mark_cancelled()
            raise
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a tool error is data
            return pb.ExecuteResponse(error=self._tool_error(tool.name, exc, cid))

    # --- ExecuteStream ----------------------------------------------------------------------

    async def ExecuteStream(self, request: Any, context: Any) -> None:
        tool, cid, args, tctx = await self._call(request, context, streaming=True)
        with self._running(tool, cid, request.session_id):
            try:
                if tool.kind is Kind.ASYNC_GEN:
                    await self._stream_async(tool, args, context, cid)
                else:
                    await self._stream_sync(tool, args, context, cid, tctx)
            except asyncio.CancelledError:
                _mark_cancelled()
                raise

    async def _stream_async(self, tool: Tool, args: dict[str, Any], context: Any, cid: str) -> None:
        agen = tool.func(**args)
        span = trace.get_current_span()
        chunks = 0
        try:
            while True:
                try:
                    item = await agen.__anext__()
                except StopAsyncIteration:
                    break
                except (Exception, SystemExit) as exc:  # noqa: BLE001 - a tool error is data
                    await self._end_stream_with_error(context, tool.name, exc, cid)
                    return
                if not await self._write_chunk(context, tool.name, item, cid, span, chunks):
                    return
                chunks += 1
            await context.write(pb.ExecuteStreamResponse(done=pb.StreamDone(chunks=chunks)))
        finally:
            await agen.aclose()

    async def _write_chunk(
        self, context: Any, tool: str, item: Any, cid: str, span: Any, index: int
    ) -> bool:
        """Write one chunk (a span event when traced). False when the item cannot be
        encoded: the stream has then been ended with a TypeError ToolError."""
        try:
            chunk = _encode(tool, item)
        except _NotSerializable as exc:
            await self._end_stream_with_error(context, tool, exc, cid)
            return False
        await context.write(pb.ExecuteStreamResponse(chunk=chunk))
        if span.is_recording():
            span.add_event("chunk", {"index": index})
        return True

    async def _end_stream_with_error(
        self, context: Any, tool: str, exc: BaseException, cid: str
    ) -> None:
        """Close a stream with the tool's exception as its final message."""
        await context.write(pb.ExecuteStreamResponse(error=self._tool_error(tool, exc, cid)))

    async def _stream_sync(
        self, tool: Tool, args: dict[str, Any], context: Any, cid: str, tctx: ToolContext | None
    ) -> None:
        ctx = contextvars.copy_context()
        run: Callable[..., Any] = ctx.run
        chunks = 0
        gen: Iterator[Any] = tool.func(**args)  # runs no tool code until the first next()
        future: Any = None
        span = trace.get_current_span()
        try:
            while True:
                future = self._executor.submit(run, _next_or_end, gen)
                try:
                    item = await asyncio.wrap_future(future)
                except (Exception, SystemExit) as exc:  # noqa: BLE001 - a tool error is data
                    await self._end_stream_with_error(context, tool.name, exc, cid)
                    return
                if item is _END:
                    break
                if not await self._write_chunk(context, tool.name, item, cid, span, chunks):
                    return
                chunks += 1
            await context.write(pb.ExecuteStreamResponse(done=pb.StreamDone(chunks=chunks)))
        except asyncio.CancelledError:
            if tctx is not None:
                tctx.cancel()
            raise
        finally:
            self._close_when_idle(future, gen, ctx)

    @staticmethod
    def _close_when_idle(future: Any, gen: Iterator[Any], ctx: contextvars.Context) -> None:
        """Close ``gen`` once its current step (``future``) is no longer running."""
        close = getattr(gen, "close", None)
        if close is None:
            return
        if future is None:
            close()
            return

        def closer(_: Any) -> None:
            try:
                ctx.run(close)
            except Exception:
                log.exception("closing the generator of a streaming tool failed")

        future.add_done_callback(closer)

    # --- the rest ---------------------------------------------------------------------------

    async def Describe(self, request: Any, context: Any) -> Any:
        return pb.DescribeResponse(
            pid=self._pid,
            python_version=platform.python_version(),
            package_version=__version__,
            protocol_version=PROTOCOL_VERSION,
            worker_id=self._worker_id,
            tools=[
                pb.ToolSpec(
                    name=t.name,
                    description=t.description,
                    parameters_schema=t.schema_json,
                    streaming=t.streaming,
                    is_async=t.is_async,
                )
                for t in self._tools.values()
            ],
        )

    async def Heartbeat(self, request: Any, context: Any) -> Any:
        correlation_id_var.set(request.correlation_id)
        return pb.HeartbeatResponse(
            sequence=request.sequence,
            worker_unix_nano=time.time_ns(),
            in_flight=self._in_flight,
            pid=self._pid,
        )

    async def OpenSession(self, request: Any, context: Any) -> Any:
        session_id = request.session_id or f"sess-{secrets.token_hex(8)}"
        self._sessions.setdefault(session_id, {})
        log.debug("session opened", extra={"session_id": session_id})
        return pb.OpenSessionResponse(session_id=session_id)

    async def CloseSession(self, request: Any, context: Any) -> Any:
        existed = self._sessions.pop(request.session_id, None) is not None
        return pb.CloseSessionResponse(existed=existed)

    async def Shutdown(self, request: Any, context: Any) -> Any:
        grace = request.grace_millis / 1000.0 if request.grace_millis else self._default_grace
        log.info("shutdown requested", extra={"grace_seconds": grace, "in_flight": self._in_flight})
        stop = self._request_stop
        if stop is not None:
            context.add_done_callback(lambda _ctx: stop(grace))
        return pb.ShutdownResponse(in_flight=self._in_flight)
