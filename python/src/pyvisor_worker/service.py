"""The WorkerService servicer: the unary RPCs (and the Channel, see channel.py) over one
Dispatcher, plus sessions, heartbeats and shutdown.

A tool's own exception becomes a ToolError in the response; contract violations are gRPC errors
tagged with a ``pyvisor-error`` reason (see errors.py). The caller's cancellation (client
cancel, deadline, shutdown) raises CancelledError inside async tools, closes generators and
sets the ToolContext flag of sync tools; it propagates as cancellation, never as a ToolError.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

import grpc
from opentelemetry import baggage, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator

from pyvisor_worker import __version__
from pyvisor_worker._proto import worker_pb2 as pb
from pyvisor_worker._proto import worker_pb2_grpc as pb_grpc
from pyvisor_worker.channel import Channel
from pyvisor_worker.context import correlation_id_var
from pyvisor_worker.dispatch import Dispatcher
from pyvisor_worker.errors import CallRejected, abort
from pyvisor_worker.shm import Shared
from pyvisor_worker.tools import Tool
from pyvisor_worker.upgrade import export_state, find_hook, import_state
from pyvisor_worker.wire import CORRELATION_ID_KEY

PROTOCOL_VERSION = 1

log = logging.getLogger("pyvisor_worker.service")

_BAGGAGE = W3CBaggagePropagator()


def _baggage_correlation_id(metadata: Any) -> str:
    """The ``correlation_id`` entry of the W3C ``baggage`` metadata ("" if absent)."""
    for key, value in metadata:
        if key == "baggage":
            text = value if isinstance(value, str) else bytes(value).decode()
            found = baggage.get_baggage("correlation_id", _BAGGAGE.extract({"baggage": text}))
            return str(found) if found else ""
    return ""


class _UnaryStream:
    """A StreamSink writing ExecuteStream responses."""

    __slots__ = ("_context", "_dispatcher", "_tool")

    def __init__(self, context: Any, dispatcher: Dispatcher, tool: str) -> None:
        self._context = context
        self._dispatcher = dispatcher
        self._tool = tool

    async def chunk(self, result: Any) -> None:
        refused = self._dispatcher.oversize(self._tool, result)
        if refused is not None:
            await abort(self._context, refused.code, refused.reason, refused.message)
        await self._context.write(pb.ExecuteStreamResponse(chunk=result))

    async def end(self, chunks: int) -> None:
        await self._context.write(pb.ExecuteStreamResponse(done=pb.StreamDone(chunks=chunks)))

    async def error(self, error: Any) -> None:
        await self._context.write(pb.ExecuteStreamResponse(error=error))


class WorkerServicer(pb_grpc.WorkerServiceServicer):
    """Serves ``tools``; sessions are owned by this instance (through its Dispatcher).

    ``request_stop(grace_seconds)`` is called after a Shutdown reply has been sent.
    ``channel_tracer`` makes the per-call SERVER spans of Channel calls (the unary RPCs get
    theirs from the gRPC instrumentation).
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
        max_message_bytes: int = 16 * 1024 * 1024,
        callbacks: Sequence[str] = (),
        shared: Shared | None = None,
    ) -> None:
        self.callbacks = frozenset(callbacks)
        self.dispatcher = Dispatcher(
            tools, executor=executor, worker_id=worker_id, tracer=tracer,
            max_message_bytes=max_message_bytes, shared=shared,
        )
        self._worker_id = worker_id
        self._default_grace = default_grace
        self._request_stop = request_stop
        self._pid = os.getpid()
        self._tracer = tracer
        self._channels: set[Channel] = set()
        self.load_failed = False
        """Set when the load phase failed: the worker is exiting, and says so."""

    @property
    def tool_names(self) -> list[str]:
        """Names of the served tools, sorted."""
        return sorted(self.dispatcher.tools)

    @property
    def in_flight(self) -> int:
        """Tool bodies currently running, whichever way their calls came."""
        return self.dispatcher.running

    # --- unary calls ------------------------------------------------------------------------

    @staticmethod
    def _correlation_id(request: Any, context: Any) -> str:
        """From the request, else metadata ``x-correlation-id``, else baggage ``correlation_id``;
        set as the call's context variable and on the server span."""
        cid: str = request.correlation_id
        if not cid:
            metadata = context.invocation_metadata() or ()
            for key, value in metadata:
                if key == CORRELATION_ID_KEY:
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

    async def _prepare(self, request: Any, context: Any, streaming: bool) -> Any:
        cid = self._correlation_id(request, context)
        try:
            tool, args, tctx = self.dispatcher.prepare(request, streaming, cid)
        except CallRejected as exc:
            await abort(context, exc.code, exc.reason, exc.message)
        return tool, cid, args, tctx

    async def Execute(self, request: Any, context: Any) -> Any:
        tool, cid, args, tctx = await self._prepare(request, context, streaming=False)
        with self.dispatcher.running_body(tool, cid, request.session_id):
            result, error = await self.dispatcher.execute(tool, args, tctx, cid)
        if error is not None:
            return pb.ExecuteResponse(error=error)
        refused = self.dispatcher.oversize(tool.name, result)
        if refused is not None:
            await abort(context, refused.code, refused.reason, refused.message)
        return pb.ExecuteResponse(result=result)

    async def ExecuteStream(self, request: Any, context: Any) -> None:
        tool, cid, args, tctx = await self._prepare(request, context, streaming=True)
        with self.dispatcher.running_body(tool, cid, request.session_id):
            await self.dispatcher.stream(
                tool, args, tctx, cid, _UnaryStream(context, self.dispatcher, tool.name)
            )

    # --- the channel ------------------------------------------------------------------------

    async def Channel(self, request_iterator: Any, context: Any) -> None:
        channel = Channel(
            self.dispatcher, context, tracer=self._tracer, pong=self._pong,
            callbacks=self.callbacks,
        )
        self._channels.add(channel)
        try:
            await channel.serve()
        finally:
            self._channels.discard(channel)

    async def drain_channels(self, grace: float) -> None:
        """Refuse new channel calls, give running ones ``grace`` seconds, cancel the rest,
        then end the channels."""
        await asyncio.gather(*(c.drain(grace) for c in list(self._channels)))

    # --- the rest ---------------------------------------------------------------------------

    async def Describe(self, request: Any, context: Any) -> Any:
        if self.load_failed:  # the host's wait for the load phase: it must not see "ready"
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                "the tools modules failed to load: the worker is exiting")
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
                for t in self.dispatcher.tools.values()
            ],
            callbacks=[pb.CallbackSpec(name=n) for n in sorted(self.callbacks)],
            code_version=self.dispatcher.code_version,
        )

    def _pong(self, request: Any) -> Any:
        return pb.HeartbeatResponse(
            sequence=request.sequence,
            worker_unix_nano=time.time_ns(),
            in_flight=self.dispatcher.running,
            pid=self._pid,
        )

    async def Heartbeat(self, request: Any, context: Any) -> Any:
        correlation_id_var.set(request.correlation_id)
        return self._pong(request)

    async def OpenSession(self, request: Any, context: Any) -> Any:
        session_id = request.session_id or f"sess-{secrets.token_hex(8)}"
        self.dispatcher.sessions.setdefault(session_id, {})
        log.debug("session opened", extra={"session_id": session_id})
        return pb.OpenSessionResponse(session_id=session_id)

    async def CloseSession(self, request: Any, context: Any) -> Any:
        existed = self.dispatcher.sessions.pop(request.session_id, None) is not None
        return pb.CloseSessionResponse(existed=existed)

    async def ExportSession(self, request: Any, context: Any) -> Any:
        version = self.dispatcher.code_version
        state = self.dispatcher.sessions.get(request.session_id)
        if state is None:
            return pb.ExportSessionResponse(existed=False, code_version=version)
        try:
            data = export_state(state)
        except Exception as exc:  # noqa: BLE001 - any object may refuse pickling
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"session {request.session_id}: its state cannot be pickled for the new code "
                                f"({type(exc).__name__}: {exc}): keep picklable values in ctx.session")
        log.info("session exported for an upgrade", extra={"session_id": request.session_id, "bytes": len(data)})
        return pb.ExportSessionResponse(state=data, existed=True, code_version=version)

    async def ImportSession(self, request: Any, context: Any) -> Any:
        hook = find_hook(self.dispatcher.tools.values())
        try:
            state, migrated = import_state(request.state, request.from_version, hook)
        except Exception as exc:
            log.error("session %s: the upgrade hook failed: %s: %s", request.session_id, type(exc).__name__, exc,
                      exc_info=exc, extra={"session_id": request.session_id})
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"session {request.session_id}: @on_upgrade raised {type(exc).__name__}: {exc}")
        self.dispatcher.sessions[request.session_id] = state
        log.info("session imported for an upgrade", extra={"session_id": request.session_id,
                                                            "from_version": request.from_version, "migrated": migrated})
        return pb.ImportSessionResponse(migrated=migrated)

    async def Shutdown(self, request: Any, context: Any) -> Any:
        grace = request.grace_millis / 1000.0 if request.grace_millis else self._default_grace
        log.info("shutdown requested", extra={"grace_seconds": grace, "in_flight": self.in_flight})
        stop = self._request_stop
        if stop is not None:
            context.add_done_callback(lambda _ctx: stop(grace))
        return pb.ShutdownResponse(in_flight=self.in_flight)
