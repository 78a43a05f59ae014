"""What every path into a tool shares: find the tool, check its arguments, run its body.

The unary RPCs (service.py) and the channel (channel.py) both call a ``Dispatcher``, so a
call means the same thing whichever way it arrives. A refused call raises ``CallRejected``
(each path turns it into its own wire form); a tool's exception, of any kind, is data: a
``ToolError``. Only the caller's own cancellation (the task running the call was cancelled)
propagates as ``asyncio.CancelledError``; a ``CancelledError`` the tool raises by itself is
its error like any other.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.thread
import contextlib
import contextvars
import json
import logging
import traceback
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor
from typing import Any, Protocol

import grpc
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from pyvisor_worker import arrays as arraysmod
from pyvisor_worker._proto import worker_pb2 as pb
from pyvisor_worker.context import ToolContext, code_version_var
from pyvisor_worker.errors import CallRejected
from pyvisor_worker.shm import PayloadTooLarge, Shared, as_bytes
from pyvisor_worker.tools import Kind, Tool
from pyvisor_worker.version import code_version
from pyvisor_worker.wire import (
    INVALID_ARGUMENT,
    MESSAGE_TOO_LARGE,
    UNKNOWN_SESSION,
    UNKNOWN_TOOL,
    WRONG_CALL_KIND,
)

log = logging.getLogger("pyvisor_worker.service")

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_BINARY = (bytes, bytearray, memoryview)
_END = object()
_NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()


def exception_type_name(exc: BaseException) -> str:
    """``ValueError`` for builtins, ``module.QualName`` otherwise."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


# Frames of the machinery that runs a tool: a traceback shown to the caller starts at the
# tool's own code.
_MACHINERY_FILES = frozenset({__file__, concurrent.futures.thread.__file__})


#: The longest exception message a ToolError carries (its traceback, four times that):
#: a tool's error must not break its worker's channel.
MAX_ERROR_TEXT = 64 * 1024


def safe_str(exc: BaseException) -> str:
    """``str(exc)``, or what stands for it when its ``__str__`` raises."""
    try:
        return str(exc)
    except BaseException as inner:  # noqa: BLE001 - hostile code's __str__
        return f"<{exception_type_name(exc)} whose __str__ raised {type(inner).__name__}>"


def cut(text: str, limit: int) -> str:
    """``text``, cut to ``limit`` characters with a marker saying how much went."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [cut: {len(text) - limit} more characters]"


def user_traceback(exc: BaseException) -> str:
    """The formatted traceback of ``exc`` without the worker's own leading frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in _MACHINERY_FILES:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


class _NotSerializable(Exception):
    pass


def encode(tool: str, value: Any) -> Any:
    """Encode a returned/yielded value as a Result (bytes → payload with json null)."""
    if isinstance(value, _BINARY):
        return pb.Result(json=b"null", payload=bytes(value))
    try:
        return pb.Result(json=_ENCODER.encode(value).encode())
    except (TypeError, ValueError, RecursionError) as exc:
        raise _NotSerializable(
            f"result of tool '{tool}' is not JSON-serializable: {exc}"
        ) from exc


def _reject_constant(name: str) -> Any:
    """NaN and Infinity are not JSON: refused in arguments, as results refuse them."""
    raise ValueError(f"{name} is not valid JSON (NaN and Infinity are refused)")


def _next_or_end(gen: Iterator[Any]) -> Any:
    return next(gen, _END)


class _Raised(Exception):
    """Carries a BaseException a sync tool raised in its thread across to the event loop:
    asyncio treats KeyboardInterrupt, SystemExit and GeneratorExit crossing a future as the
    loop's own, not as the tool's error."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.exc = exc


def _guarded(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` in a tool's thread; a BaseException that is not an Exception leaves it
    wrapped in _Raised."""
    try:
        return fn(*args, **kwargs)
    except Exception:
        raise
    except BaseException as exc:  # noqa: BLE001 - the tool's, whatever its kind
        raise _Raised(exc) from None


def caller_cancelled() -> bool:
    """True when the running task was cancelled by its caller (not by the tool itself)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def thread_over(future: concurrent.futures.Future[Any]) -> None:
    """Wait until a sync body's thread is done with ``future`` (at once if it never
    started), whatever further cancellations arrive: its call is not over before that."""
    if future.cancel():
        return
    done = asyncio.wrap_future(future)
    while not done.done():
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            continue
        except BaseException:  # noqa: BLE001 - the body's outcome no longer matters
            break
    if not done.cancelled():
        done.exception()  # retrieved: a cancelled call's error is not reported


def mark_cancelled() -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("pyvisor.cancelled", True)


class StreamSink(Protocol):
    """Where a streaming call's events go (the unary stream, or channel frames)."""

    async def chunk(self, result: Any) -> None: ...

    async def end(self, chunks: int) -> None: ...

    async def error(self, error: Any) -> None: ...


class Dispatcher:
    """Runs the tools of one worker; owns its sessions and counts the bodies running."""

    def __init__(
        self,
        tools: Mapping[str, Tool],
        *,
        executor: Executor,
        worker_id: str = "",
        tracer: trace.Tracer | None = None,
        max_message_bytes: int = 16 * 1024 * 1024,
        shared: Shared | None = None,
    ) -> None:
        self.set_tools(tools)
        self.shared = shared
        """The shared-memory arenas, when the host passed them (Channel calls only)."""
        self.max_message_bytes = max_message_bytes
        self.executor = executor
        self.worker_id = worker_id
        self.tracer = tracer
        self.sessions: dict[str, dict[str, Any]] = {}
        self.running = 0

    def set_tools(self, tools: Mapping[str, Tool]) -> None:
        """The tools this worker serves (set once their modules are loaded)."""
        self.tools = dict(tools)
        self._registered = ", ".join(sorted(self.tools)) or "none"
        self.code_version = code_version(self.tools.values())

    # --- before the body --------------------------------------------------------------------

    def prepare(
        self, request: Any, streaming: bool, correlation_id: str, shared: Shared | None = None,
    ) -> tuple[Tool, dict[str, Any], ToolContext | None]:
        """The tool a request names and its keyword arguments (with the ToolContext when the
        tool takes one); raises CallRejected when the call cannot run. ``shared`` is given on
        the Channel: a payload_ref then names the payload in its input arena."""
        tool = self.tools.get(request.tool)
        if tool is None:
            raise CallRejected(
                grpc.StatusCode.NOT_FOUND, UNKNOWN_TOOL,
                f"unknown tool '{request.tool}' (registered: {self._registered})",
            )
        if tool.streaming != streaming:
            if tool.streaming:
                message = (f"tool '{tool.name}' is a streaming tool: call it as a stream "
                           "(Go: Runtime.Stream or pyvisor.CallStream; gRPC: ExecuteStream)")
            else:
                message = (f"tool '{tool.name}' is not a streaming tool: call it once "
                           "(Go: Runtime.Execute or pyvisor.Call; gRPC: Execute)")
            raise CallRejected(grpc.StatusCode.FAILED_PRECONDITION, WRONG_CALL_KIND, message)
        raw = request.arguments
        size = len(raw) + len(request.payload)
        arrays = request.arrays
        if arrays:
            size += sum(len(a.data) for a in arrays)
        if size > self.max_message_bytes:
            raise CallRejected(
                grpc.StatusCode.RESOURCE_EXHAUSTED, MESSAGE_TOO_LARGE,
                f"arguments and payload of tool '{tool.name}' are {size} bytes, over the "
                f"worker's limit of {self.max_message_bytes} bytes",
            )
        if raw:
            try:
                args = json.loads(raw, parse_constant=_reject_constant)
            except (ValueError, UnicodeDecodeError) as exc:
                raise CallRejected(
                    grpc.StatusCode.INVALID_ARGUMENT, INVALID_ARGUMENT,
                    f"arguments for tool '{tool.name}' must be a JSON object ({exc})",
                ) from None
            except RecursionError:
                raise CallRejected(
                    grpc.StatusCode.INVALID_ARGUMENT, INVALID_ARGUMENT,
                    f"arguments for tool '{tool.name}' are nested too deeply",
                ) from None
        else:
            args = {}
        payload: bytes | memoryview = request.payload
        if request.HasField("payload_ref"):
            if shared is None:
                raise CallRejected(
                    grpc.StatusCode.INVALID_ARGUMENT, INVALID_ARGUMENT,
                    "a shared-memory payload_ref is only valid on the runtime's Channel",
                )
            try:
                payload = shared.payload(request.payload_ref)
            except ValueError as exc:
                raise CallRejected(
                    grpc.StatusCode.INVALID_ARGUMENT, INVALID_ARGUMENT, str(exc)) from None
        if arrays:
            self._merge_arrays(tool.name, arrays, args, shared)
        problem = tool.validator.validate(args)
        if problem is not None:
            raise CallRejected(grpc.StatusCode.INVALID_ARGUMENT, INVALID_ARGUMENT, problem)
        session: dict[str, Any] | None = None
        session_id: str | None = request.session_id or None
        if session_id is not None:
            session = self.sessions.get(session_id)
            if session is None:
                raise CallRejected(
                    grpc.StatusCode.NOT_FOUND, UNKNOWN_SESSION, f"unknown session '{session_id}'"
                )
        tctx: ToolContext | None = None
        if tool.context_param is not None:
            tctx = ToolContext(
                tool=tool.name,
                correlation_id=correlation_id,
                worker_id=self.worker_id,
                session_id=session_id,
                session=session,
                metadata=dict(request.metadata),
                payload=payload,
                logger=logging.getLogger(tool.func.__module__),
                shared=shared,
            )
            args[tool.context_param] = tctx
        if log.isEnabledFor(logging.DEBUG):
            op = "execute stream" if streaming else "execute"
            log.debug("%s %s", op, tool.name, extra={"tool": tool.name})
        return tool, args, tctx

    @staticmethod
    def _merge_arrays(
        tool: str, arrays: Any, args: Any, shared: Shared | None,
    ) -> None:
        """Put a call's arrays into its keyword arguments, read in place."""
        if not isinstance(args, dict):
            return  # the validator refuses it
        for array in arrays:
            if array.name in args:
                raise CallRejected(
                    grpc.StatusCode.INVALID_ARGUMENT, INVALID_ARGUMENT,
                    f"argument '{array.name}' of tool '{tool}' is given twice: "
                    "in the JSON arguments and as an array")
            try:
                args[array.name] = arraysmod.read(array, shared)
            except ValueError as exc:  # ArrayError, a ref outside the arena
                raise CallRejected(
                    grpc.StatusCode.INVALID_ARGUMENT, INVALID_ARGUMENT,
                    f"tool '{tool}': {exc}") from None

    def oversize(self, tool: str, result: Any) -> CallRejected | None:
        """The refusal of a result over the message limit (None when it fits)."""
        size = len(result.payload) or len(result.json)
        arrays = result.arrays
        if arrays:  # most results have none: no generator on the hot path
            size += sum(len(a.data) for a in arrays)
        if size <= self.max_message_bytes:
            return None
        return CallRejected(
            grpc.StatusCode.RESOURCE_EXHAUSTED, MESSAGE_TOO_LARGE,
            f"result of tool '{tool}' is {size} bytes, over the worker's limit of "
            f"{self.max_message_bytes} bytes",
        )

    @contextlib.contextmanager
    def running_body(self, tool: Tool, cid: str, session_id: str) -> Iterator[None]:
        """A body running (heartbeats report how many), inside its ``tool <name>`` span."""
        self.running += 1
        version = code_version_var.set(self.code_version)
        try:
            with self._tool_span(tool.name, cid, session_id):
                yield
        finally:
            code_version_var.reset(version)
            self.running -= 1

    def _tool_span(self, tool: str, correlation_id: str, session_id: str) -> Any:
        if self.tracer is None:
            return _NO_SPAN
        attributes = {"pyvisor.tool": tool, "pyvisor.correlation_id": correlation_id,
                      "pyvisor.pool.version": self.code_version}
        if session_id:
            attributes["pyvisor.session_id"] = session_id
        return self.tracer.start_as_current_span(
            f"tool {tool}",
            kind=trace.SpanKind.INTERNAL,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )

    def tool_error(self, tool: str, exc: BaseException, correlation_id: str) -> Any:
        """The ToolError of ``exc`` (recorded on the current span and logged), whatever its
        ``__str__`` does, its message and traceback cut to fit a frame."""
        limit = min(MAX_ERROR_TEXT, self.max_message_bytes // 8)
        formatted = cut(user_traceback(exc), 4 * limit)
        message = cut(safe_str(exc), limit)
        span = trace.get_current_span()
        if span.is_recording():
            span.record_exception(exc, attributes={"exception.message": message, "exception.stacktrace": formatted})
            span.set_status(Status(StatusCode.ERROR, f"{exception_type_name(exc)}: {message}"))
        log.error(
            "tool '%s' raised %s: %s", tool, exception_type_name(exc), message,
            extra={"tool": tool, "exception": formatted},
        )
        type_name = "TypeError" if isinstance(exc, _NotSerializable) else exception_type_name(exc)
        return pb.ToolError(
            tool=tool, type=type_name, message=message, traceback=formatted,
            correlation_id=correlation_id,
        )

    # --- the body ---------------------------------------------------------------------------

    async def encode(
        self, tool: str, value: Any, tctx: ToolContext | None, shared: Shared | None
    ) -> Any:
        """A returned or yielded value as a Result: bytes-like values of the threshold's size
        or more go to the output arena when ``shared`` is given (in place when the tool built
        them in ``ctx.buffer``); arrays, and a dict's array values, go as Arrays. Raises
        CallRejected for bytes over the payload limit, and _NotSerializable for a value JSON
        cannot carry."""
        rest, arrays = arraysmod.split(value)
        if arrays:
            return await self._encode_arrays(tool, rest, arrays, tctx, shared)
        if shared is not None and isinstance(value, _BINARY):
            data = as_bytes(value)
            if data.nbytes >= shared.threshold:
                owned = tctx.buffers if tctx is not None else None
                try:
                    ref = await shared.place(data, owned)
                except PayloadTooLarge as exc:
                    raise CallRejected(
                        grpc.StatusCode.RESOURCE_EXHAUSTED, MESSAGE_TOO_LARGE,
                        f"result of tool '{tool}': {exc}") from None
                return pb.Result(json=b"null", payload_ref=ref)
        return encode(tool, value)

    async def _encode_arrays(
        self, tool: str, rest: Any, arrays: dict[str, Any], tctx: ToolContext | None,
        shared: Shared | None,
    ) -> Any:
        owned = tctx.buffers if tctx is not None else None
        result = encode(tool, rest)
        try:
            result.arrays.extend(await arraysmod.encode_all(arrays, shared, owned))
        except PayloadTooLarge as exc:
            raise CallRejected(
                grpc.StatusCode.RESOURCE_EXHAUSTED, MESSAGE_TOO_LARGE,
                f"result of tool '{tool}': {exc}") from None
        except arraysmod.ArrayError as exc:
            raise _NotSerializable(f"result of tool '{tool}': {exc}") from None
        return result

    async def execute(
        self, tool: Tool, args: dict[str, Any], tctx: ToolContext | None, cid: str,
        shared: Shared | None = None,
    ) -> tuple[Any, Any]:
        """Run a non-streaming tool: ``(Result, None)`` or ``(None, ToolError)``. Raises
        CallRejected for a result over the payload limit."""
        try:
            if tool.kind is Kind.ASYNC:
                value = await tool.func(**args)
            else:
                run: Callable[..., Any] = contextvars.copy_context().run
                future = self.executor.submit(run, _guarded, tool.func, **args)
                try:
                    value = await asyncio.wrap_future(future)
                except asyncio.CancelledError:
                    if caller_cancelled():
                        if tctx is not None:
                            tctx.cancel()
                        await thread_over(future)
                    raise
        except _Raised as raised:
            return None, self.tool_error(tool.name, raised.exc, cid)
        except asyncio.CancelledError as exc:
            if not caller_cancelled():
                return None, self.tool_error(tool.name, exc, cid)
            if tctx is not None:
                tctx.cancel()
            mark_cancelled()
            raise
        except BaseException as exc:  # noqa: BLE001 - a tool error is data, whatever its kind
            return None, self.tool_error(tool.name, exc, cid)
        try:
            return await self.encode(tool.name, value, tctx, shared), None
        except _NotSerializable as exc:
            return None, self.tool_error(tool.name, exc, cid)

    async def stream(
        self, tool: Tool, args: dict[str, Any], tctx: ToolContext | None, cid: str,
        sink: StreamSink, shared: Shared | None = None,
    ) -> None:
        """Run a streaming tool, handing its chunks and its end (or error) to ``sink``."""
        try:
            if tool.kind is Kind.ASYNC_GEN:
                await self._stream_async(tool, args, tctx, cid, sink, shared)
            else:
                await self._stream_sync(tool, args, tctx, cid, sink, shared)
        except asyncio.CancelledError:
            if tctx is not None:
                tctx.cancel()
            mark_cancelled()
            raise

    async def _stream_async(
        self, tool: Tool, args: dict[str, Any], tctx: ToolContext | None, cid: str,
        sink: StreamSink, shared: Shared | None,
    ) -> None:
        agen = tool.func(**args)
        span = trace.get_current_span()
        chunks = 0
        try:
            while True:
                try:
                    item = await agen.__anext__()
                except StopAsyncIteration:
                    break
                except asyncio.CancelledError as exc:
                    if caller_cancelled():
                        raise
                    await sink.error(self.tool_error(tool.name, exc, cid))
                    return
                except BaseException as exc:  # noqa: BLE001 - a tool error is data
                    await sink.error(self.tool_error(tool.name, exc, cid))
                    return
                if not await self._chunk(sink, tool.name, item, cid, span, chunks, tctx, shared):
                    return
                chunks += 1
            await sink.end(chunks)
        finally:
            await agen.aclose()

    async def _chunk(
        self, sink: StreamSink, tool: str, item: Any, cid: str, span: Any, index: int,
        tctx: ToolContext | None, shared: Shared | None,
    ) -> bool:
        """Hand one chunk on (a span event when traced). False when the item cannot be
        encoded: the stream has then been ended with a TypeError ToolError."""
        try:
            chunk = await self.encode(tool, item, tctx, shared)
        except _NotSerializable as exc:
            await sink.error(self.tool_error(tool, exc, cid))
            return False
        await sink.chunk(chunk)
        if span.is_recording():
            span.add_event("chunk", {"index": index})
        return True

    async def _stream_sync(
        self, tool: Tool, args: dict[str, Any], tctx: ToolContext | None, cid: str,
        sink: StreamSink, shared: Shared | None,
    ) -> None:
        ctx = contextvars.copy_context()
        run: Callable[..., Any] = ctx.run
        chunks = 0
        gen: Iterator[Any] = tool.func(**args)  # runs no tool code until the first next()
        future: Any = None
        span = trace.get_current_span()
        try:
            while True:
                future = self.executor.submit(run, _guarded, _next_or_end, gen)
                try:
                    item = await asyncio.wrap_future(future)
                except _Raised as raised:
                    await sink.error(self.tool_error(tool.name, raised.exc, cid))
                    return
                except asyncio.CancelledError as exc:
                    if caller_cancelled():
                        if tctx is not None:
                            tctx.cancel()
                        await thread_over(future)
                        raise
                    await sink.error(self.tool_error(tool.name, exc, cid))
                    return
                except BaseException as exc:  # noqa: BLE001 - a tool error is data
                    await sink.error(self.tool_error(tool.name, exc, cid))
                    return
                if item is _END:
                    break
                if not await self._chunk(sink, tool.name, item, cid, span, chunks, tctx, shared):
                    return
                chunks += 1
            await sink.end(chunks)
        finally:
            self._close_when_idle(future, gen, ctx)

    def _close_when_idle(self, future: Any, gen: Iterator[Any], ctx: contextvars.Context) -> None:
        """Close ``gen`` once its current step (``future``) is no longer running, in a tool
        thread as its steps ran: its ``finally`` is sync tool code (it may block, or make a
        blocking ``ctx.call_go``), never run on the event loop."""
        close = getattr(gen, "close", None)
        if close is None:
            return
        if future is None:
            close()  # never started: no tool code runs
            return

        def run_close() -> None:
            try:
                ctx.run(close)
            except Exception:
                log.exception("closing the generator of a streaming tool failed")

        def closer(_: Any) -> None:
            try:
                self.executor.submit(run_close)
            except RuntimeError:  # the executor is shut down: the worker is exiting
                run_close()

        future.add_done_callback(closer)
