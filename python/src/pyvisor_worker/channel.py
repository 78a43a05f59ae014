"""The frame loop of the Channel RPC: the runtime's calls, multiplexed on one stream.

One reader (``serve``) takes host frames in order. A call frame becomes one task, which
prepares the call, runs the body and writes exactly one terminal frame (result, end,
tool_error, failed, or body_ended after a cancellation) once the body is over. Writes are
serialized without a writer task on the common path: the task that finds the stream idle
writes, and drains what others queued meanwhile. A streaming call sends chunks only while it
has credit from the host, so one slow consumer never fills the stream for the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import Status, StatusCode

from pyvisor_worker import arrays as arraysmod
from pyvisor_worker._proto import worker_pb2 as pb
from pyvisor_worker.context import correlation_id_var, span_id_var, trace_id_var
from pyvisor_worker.dispatch import Dispatcher
from pyvisor_worker.errors import CallRejected
from pyvisor_worker.gocall import GoCaller, GoError
from pyvisor_worker.shm import PayloadTooLarge, Shared, refs
from pyvisor_worker.wire import CANCELLED, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE

log = logging.getLogger("pyvisor_worker.channel")

SERVICE = "pyvisor.worker.v1.WorkerService"
_SPAN_NAMES = {False: f"/{SERVICE}/Execute", True: f"/{SERVICE}/ExecuteStream"}
_HEARTBEAT_SPAN = f"/{SERVICE}/Heartbeat"
_OK = grpc.StatusCode.OK.value[0]
_CANCELLED = grpc.StatusCode.CANCELLED.value[0]
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
# Cancellations that come from the host (a cancel frame, or the call's own deadline).
_HOST_REASONS = frozenset({CANCELLED, DEADLINE_EXCEEDED})


class _Running:
    """One call on the channel: its task, whether it has begun, its stream credit, its
    deadline (loop time, 0 for none) and the callbacks it is waiting on."""

    __slots__ = ("callbacks", "cancel_reason", "cid", "credit", "deadline", "more", "started",
                 "task", "timer")

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.started = False
        self.cancel_reason = ""
        self.credit = 0
        self.more: asyncio.Event | None = None
        self.deadline = 0.0
        self.cid = ""
        self.callbacks: dict[int, asyncio.Future[Any]] | None = None

    def withdraw_callbacks(self) -> None:
        """Cancel the callbacks the call is waiting on (each tells the host)."""
        if self.callbacks:
            for reply in list(self.callbacks.values()):
                reply.cancel()


class _FrameStream:
    """A StreamSink writing chunk and end frames, chunks only while credit lasts."""

    __slots__ = ("_call_id", "_channel", "_running", "_tool", "final")

    def __init__(self, channel: Channel, call_id: int, running: _Running, tool: str) -> None:
        self._channel = channel
        self._tool = tool
        self._call_id = call_id
        self._running = running
        self.final: Any = None  # the terminal frame, for the call's task to send last

    async def chunk(self, result: Any) -> None:
        running = self._running
        try:
            while running.credit <= 0:
                running.more = asyncio.Event()
                await running.more.wait()
        except BaseException:
            # Cancelled while waiting for credit: the host never hears of this chunk, so
            # what it holds in the output arena goes back here.
            shared = self._channel.shared
            if shared is not None:
                shared.output.release(refs(result))
            raise
        running.credit -= 1
        refused = self._channel.oversize(self._tool, result)
        if refused is not None:
            self._channel.free(result)  # never sent: its regions go back here
            raise refused  # ends the stream (closing the generator) with a failed frame
        self._channel.post(pb.WorkerFrame(call_id=self._call_id, chunk=result))

    async def end(self, chunks: int) -> None:
        self.final = pb.WorkerFrame(call_id=self._call_id, end=pb.StreamDone(chunks=chunks))

    async def error(self, error: Any) -> None:
        self.final = pb.WorkerFrame(call_id=self._call_id, tool_error=error)


class Channel:
    """Serves one Channel RPC for ``dispatcher``."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        context: Any,
        *,
        tracer: trace.Tracer | None,
        pong: Callable[[Any], Any],
        callbacks: frozenset[str] = frozenset(),
    ) -> None:
        self._dispatcher = dispatcher
        self._context = context
        self._tracer = tracer
        self._pong = pong
        self.callbacks = callbacks
        """The Go callbacks the host serves."""
        self._calls: dict[int, _Running] = {}
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._next_callback = 0
        self._queue: deque[Any] = deque()
        self._writers: set[asyncio.Task[None]] = set()
        self._writing = False
        self._closed = False
        self._draining = False
        self._ended: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None

    # --- reading ----------------------------------------------------------------------------

    async def serve(self) -> None:
        """Serve until the host closes its side (the calls running then finish first), the
        RPC ends (they are cancelled), or ``drain`` ends the channel."""
        self._ended = asyncio.Event()
        reader = asyncio.get_running_loop().create_task(self._read())
        try:
            await self._ended.wait()
        finally:
            reader.cancel()
            self._closed = True
            for call_id in list(self._calls):
                self.cancel(call_id, "channel closed")
            # The RPC must not end under a write in progress: gRPC would never send its
            # status.
            while self._writing:
                await asyncio.sleep(0.001)

    async def _read(self) -> None:
        # On a task of its own: cancelling it leaves the RPC's handler free to end the RPC
        # with a status (a cancelled read inside the handler would leave it hanging).
        read = self._context.read
        try:
            while True:
                frame = await read()
                if frame is grpc.aio.EOF:
                    break
                which = frame.WhichOneof("body")
                if which == "call":
                    self._start(frame.call_id, frame.call)
                elif which == "cancel":
                    self.cancel(frame.call_id, frame.cancel.reason or CANCELLED)
                elif which == "ping":
                    self._ping(frame.ping)
                elif which == "credit":
                    self._credit(frame.call_id, frame.credit.chunks)
                elif which == "release":
                    shared = self._dispatcher.shared
                    if shared is not None:
                        shared.output.release(frame.release.offsets)
                elif which == "callback_reply":
                    reply = self._replies.get(frame.callback_reply.callback_id)
                    if reply is not None and not reply.done():
                        reply.set_result(frame.callback_reply)
            await self._wait_idle()
        except Exception as exc:  # noqa: BLE001 - the RPC failed: the channel ends
            log.debug("channel read failed: %s", exc)
        finally:
            self._end()

    def _end(self) -> None:
        if self._ended is not None:
            self._ended.set()

    def _start(self, call_id: int, call: Any) -> None:
        if self._draining:
            self.post(pb.WorkerFrame(call_id=call_id, failed=pb.CallFailed(
                code=_UNAVAILABLE.value[0], reason=UNAVAILABLE, message="worker is shutting down",
            )))
            return
        running = _Running()
        running.credit = call.credit
        running.cid = call.request.correlation_id
        self._calls[call_id] = running
        loop = asyncio.get_running_loop()
        running.task = loop.create_task(self._run(call_id, call, running))
        if call.timeout_micros > 0:
            timeout = call.timeout_micros / 1e6
            running.deadline = loop.time() + timeout
            running.timer = loop.call_later(timeout, self.cancel, call_id, DEADLINE_EXCEEDED)

    def cancel(self, call_id: int, reason: str) -> None:
        """Cancel a call's body; its task answers body_ended once the body is over."""
        running = self._calls.get(call_id)
        if running is None or running.cancel_reason:
            return  # over already (its answer is on its way), or cancelled already
        running.cancel_reason = reason
        if running.started and running.task is not None:
            running.task.cancel()
        running.withdraw_callbacks()  # a sync tool's thread waits on them

    def _ping(self, ping: Any) -> None:
        """Answer at once, on the loop that runs the calls: a wedged loop misses pings."""
        if self._tracer is None or not ping.trace_context:
            self.post(pb.WorkerFrame(pong=self._pong(ping)))
            return
        with self._tracer.start_as_current_span(
            _HEARTBEAT_SPAN,
            context=propagate.extract(dict(ping.trace_context)),
            kind=trace.SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": "Heartbeat",
                        "rpc.grpc.status_code": _OK},
        ):
            self.post(pb.WorkerFrame(pong=self._pong(ping)))

    @staticmethod
    def _cancelled(call_id: int, reason: str) -> Any:
        """The terminal frame of a cancelled call: body_ended when the host cancelled it
        (its caller has its error already), a refusal when the worker did (shutdown)."""
        if reason in _HOST_REASONS:
            return pb.WorkerFrame(call_id=call_id, body_ended=pb.BodyEnded(cancelled=True))
        return _failed(call_id, CallRejected(
            _UNAVAILABLE, UNAVAILABLE, f"the worker cancelled the call: {reason}"))

    def _credit(self, call_id: int, chunks: int) -> None:
        running = self._calls.get(call_id)
        if running is None:
            return
        running.credit += chunks
        if running.more is not None:
            running.more.set()

    # --- one call ---------------------------------------------------------------------------

    async def _run(self, call_id: int, call: Any, running: _Running) -> None:
        running.started = True
        frame: Any = None
        if running.cancel_reason:  # cancelled before it began: no body ran
            frame = self._cancelled(call_id, running.cancel_reason)
        else:
            try:
                frame = await self._call(call_id, call, running)
            except asyncio.CancelledError:
                frame = self._cancelled(call_id, running.cancel_reason)
            except Exception as exc:
                log.exception("call %d failed in the worker", call_id)
                frame = _failed(call_id, CallRejected(
                    grpc.StatusCode.INTERNAL, INTERNAL, f"worker error: {exc!r}"))
        # Over: from here on nothing cancels this task, so its write is never cut short.
        del self._calls[call_id]
        running.withdraw_callbacks()  # made by tasks the tool left behind
        if running.timer is not None:
            running.timer.cancel()
        await self._send(frame)
        self._check_idle()

    async def _call(self, call_id: int, call: Any, running: _Running) -> Any:
        request = call.request
        cid: str = request.correlation_id
        correlation_id_var.set(cid)
        streaming: bool = call.stream
        if self._tracer is None:
            if call.trace_context:
                _log_trace_fields(call.trace_context.get("traceparent", ""))
            return await self._body(call_id, request, streaming, cid, running, None)
        carrier = dict(call.trace_context)
        method = "ExecuteStream" if streaming else "Execute"
        with self._tracer.start_as_current_span(
            _SPAN_NAMES[streaming],
            context=propagate.extract(carrier) if carrier else None,
            kind=trace.SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": method,
                "pyvisor.correlation_id": cid,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                frame = await self._body(call_id, request, streaming, cid, running, span)
            except asyncio.CancelledError:
                if span.is_recording():
                    span.set_attribute("rpc.grpc.status_code", _CANCELLED)
                    span.set_status(Status(StatusCode.ERROR, running.cancel_reason))
                raise
            if span.is_recording():
                failed = frame.failed if frame.WhichOneof("body") == "failed" else None
                span.set_attribute("rpc.grpc.status_code", failed.code if failed else _OK)
                if failed:
                    span.set_status(Status(StatusCode.ERROR, failed.message))
            return frame

    async def _body(
        self, call_id: int, request: Any, streaming: bool, cid: str, running: _Running,
        span: Any,
    ) -> Any:
        d = self._dispatcher
        shared = d.shared
        try:
            tool, args, tctx = d.prepare(request, streaming, cid, shared)
        except CallRejected as exc:
            return _failed(call_id, exc)
        if tctx is not None:
            tctx.bind_go(GoCaller(self, call_id))
        try:
            with d.running_body(tool, cid, request.session_id):
                if streaming:
                    sink = _FrameStream(self, call_id, running, tool.name)
                    try:
                        await d.stream(tool, args, tctx, cid, sink, shared)
                    except CallRejected as exc:
                        return _failed(call_id, exc)
                    return sink.final
                try:
                    result, error = await d.execute(tool, args, tctx, cid, shared)
                except CallRejected as exc:
                    return _failed(call_id, exc)
        finally:
            if tctx is not None:
                tctx.end()
        if error is not None:
            return pb.WorkerFrame(call_id=call_id, tool_error=error)
        refused = d.oversize(tool.name, result)
        if refused is not None:
            self.free(result)  # never sent: its regions go back here
            return _failed(call_id, refused)
        return pb.WorkerFrame(call_id=call_id, result=result)

    def oversize(self, tool: str, result: Any) -> CallRejected | None:
        return self._dispatcher.oversize(tool, result)

    def free(self, result: Any) -> None:
        """Give back the output regions of a result that will not be sent."""
        shared = self.shared
        if shared is not None:
            shared.output.release(refs(result))

    # --- callbacks into Go ------------------------------------------------------------------

    @property
    def shared(self) -> Shared | None:
        """The worker's shared-memory arenas (None without them)."""
        return self._dispatcher.shared

    @property
    def tracer(self) -> trace.Tracer | None:
        return self._tracer

    @property
    def max_message_bytes(self) -> int:
        return self._dispatcher.max_message_bytes

    def correlation_id(self, call_id: int) -> str:
        running = self._calls.get(call_id)
        return running.cid if running is not None else ""

    async def callback(self, call_id: int, name: str, args: bytes, carrier: dict[str, str],
                       arrays: dict[str, Any] | None = None) -> Any:
        """Ask the host to run Go callback ``name`` for call ``call_id``; return its reply
        frame. Cancelled with the call; when cancelled, the host is told to cancel it too.
        ``arrays`` travel beside the JSON (in the output arena when large: the host gives
        them back once the Go function has returned)."""
        running = self._calls.get(call_id)
        if running is not None and running.cancel_reason:
            raise GoError(GoError.CANCELLED, "the tool call was cancelled", name)
        if running is None or self._closed:
            raise GoError(GoError.UNAVAILABLE, "the tool call is over", name)
        wire = await self._callback_arrays(name, arrays) if arrays else []
        self._next_callback += 1
        callback_id = self._next_callback
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        self._replies[callback_id] = reply
        if running.callbacks is None:
            running.callbacks = {}
        running.callbacks[callback_id] = reply
        timeout = 0
        if running.deadline:
            timeout = max(int((running.deadline - loop.time()) * 1e6), 1)
        self.post(pb.WorkerFrame(call_id=call_id, callback=pb.Callback(
            callback_id=callback_id, name=name, arguments=args, trace_context=carrier,
            timeout_micros=timeout, arrays=wire,
        )))
        try:
            return await reply
        except asyncio.CancelledError:
            if not self._closed:
                self.post(pb.WorkerFrame(
                    call_id=call_id, callback_cancel=pb.CallbackCancel(callback_id=callback_id)))
            raise
        finally:
            del self._replies[callback_id]
            if running.callbacks is not None:
                running.callbacks.pop(callback_id, None)

    async def _callback_arrays(self, name: str, arrays: dict[str, Any]) -> list[Any]:
        """A callback's array arguments on the wire; GoError for one that cannot cross."""
        try:
            return await arraysmod.encode_all(arrays, self.shared, None)
        except PayloadTooLarge as exc:
            raise GoError(GoError.MESSAGE_TOO_LARGE, f"argument arrays: {exc}", name) from None
        except arraysmod.ArrayError as exc:
            raise GoError(GoError.INVALID_ARGUMENT, f"argument arrays: {exc}", name) from None

    # --- writing ----------------------------------------------------------------------------

    def post(self, frame: Any) -> None:
        """Queue ``frame`` for writing; a writer task starts if none is writing."""
        self._queue.append(frame)
        if not self._writing:
            self._writing = True
            writer = asyncio.get_running_loop().create_task(self._drain_queue())
            self._writers.add(writer)  # asyncio keeps only a weak reference to a task
            writer.add_done_callback(self._writers.discard)

    async def _send(self, frame: Any) -> None:
        """Write ``frame`` now if the stream is idle (then drain the queue), else queue it."""
        if self._writing:
            self._queue.append(frame)
            return
        self._writing = True
        self._queue.append(frame)
        await self._drain_queue()

    async def _drain_queue(self) -> None:
        write = self._context.write
        try:
            while self._queue:
                frame = self._queue.popleft()
                if not self._closed:
                    await write(frame)
        except Exception as exc:  # noqa: BLE001 - the stream is gone: nobody to answer
            log.debug("channel write failed: %s", exc)
            self._closed = True
            self._queue.clear()
        finally:
            self._writing = False
            self._check_idle()

    # --- stopping ---------------------------------------------------------------------------

    def _busy(self) -> bool:
        return bool(self._calls or self._writing or self._queue)

    def _check_idle(self) -> None:
        if self._idle is not None and not self._busy():
            self._idle.set()

    async def _wait_idle(self) -> None:
        """Until no call runs and every answer is written."""
        while self._busy():
            self._idle = asyncio.Event()
            await self._idle.wait()

    async def drain(self, grace: float) -> None:
        """Refuse new calls, give running ones ``grace`` seconds, cancel the rest, and end
        the channel once their answers are written."""
        self._draining = True
        try:
            await asyncio.wait_for(self._wait_idle(), grace)
        except TimeoutError:
            for call_id in list(self._calls):
                self.cancel(call_id, "shutdown")
            try:
                await asyncio.wait_for(self._wait_idle(), 1.0)
            except TimeoutError:
                log.warning("calls still running after cancellation at shutdown",
                            extra={"in_flight": len(self._calls)})
        self._end()


def _failed(call_id: int, exc: CallRejected) -> Any:
    return pb.WorkerFrame(call_id=call_id, failed=pb.CallFailed(
        code=exc.code.value[0], reason=exc.reason, message=exc.message,
    ))


def _log_trace_fields(traceparent: str) -> None:
    """Without a tracer, still put the caller's trace on this call's log lines."""
    parts = traceparent.split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16:
        trace_id_var.set(parts[1])
        span_id_var.set(parts[2])
