"""A serving worker: the grpc.aio server with WorkerService and health, bound and handshaken.

``Worker.start()`` binds (Unix socket or 127.0.0.1 TCP) and returns the handshake line;
``request_stop(grace)`` starts a graceful stop (health NOT_SERVING, new calls rejected,
in-flight calls get ``grace`` seconds then are cancelled); ``wait_stopped()`` waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from pyvisor_worker import __version__, sockets, telemetry
from pyvisor_worker._proto import worker_pb2_grpc as pb_grpc
from pyvisor_worker.auth import TokenInterceptor
from pyvisor_worker.config import WorkerConfig
from pyvisor_worker.service import PROTOCOL_VERSION, WorkerServicer
from pyvisor_worker.shm import Shared
from pyvisor_worker.tools import Tool

log = logging.getLogger("pyvisor_worker.server")

SERVICE_NAME = "pyvisor.worker.v1.WorkerService"
# Room on top of the message limit for what a frame holds besides the tool's data.
FRAME_SLACK_BYTES = 1 << 20


class BindError(Exception):
    """The worker could not create its socket or listen on it."""


class Worker:
    """One worker's server; build, ``await start()``, then ``request_stop`` / ``wait_stopped``.

    With ``tracing`` (see telemetry.setup) every RPC gets a SERVER span and every tool call a
    ``tool <name>`` span; without it no tracing code runs.
    """

    def __init__(
        self,
        config: WorkerConfig,
        tools: Mapping[str, Tool],
        tracing: telemetry.Tracing | None = None,
    ) -> None:
        if config.socket is None and not config.token:
            raise ValueError("a TCP worker needs a token")
        self.config = config
        self.tracing = tracing
        self.socket_path = os.path.abspath(config.socket) if config.socket else None
        self.executor = ThreadPoolExecutor(
            max_workers=config.threads, thread_name_prefix="pyvisor-tool"
        )
        self.servicer = WorkerServicer(
            tools,
            executor=self.executor,
            worker_id=config.worker_id,
            default_grace=config.shutdown_grace,
            request_stop=self.request_stop,
            tracer=(
                tracing.provider.get_tracer(telemetry.TRACER_NAME, __version__)
                if tracing is not None else None
            ),
            max_message_bytes=config.max_message_bytes,
            callbacks=config.callbacks,
            shared=_shared(config),
        )
        self.health = HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._stop_grace: float | None = None
        self._stop_requested: asyncio.Event | None = None
        self._stopped: asyncio.Event | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self.interceptors: tuple[grpc.aio.ServerInterceptor, ...] = ()

    def load(self, tools: Mapping[str, Tool]) -> None:
        """Serve ``tools`` from now on (the end of the load phase)."""
        self.servicer.dispatcher.set_tools(tools)

    @property
    def stopping(self) -> bool:
        return self._stop_grace is not None

    async def start(self) -> str:
        """Bind and start serving; return the handshake line (with its newline)."""
        self._stop_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        # The limit applies to tool arguments and results: the channel checks them itself, so
        # that an oversize one fails its own call, and gRPC's own limit leaves room for the
        # frame around them.
        wire_limit = self.config.max_message_bytes + FRAME_SLACK_BYTES
        options = [
            ("grpc.max_receive_message_length", wire_limit),
            ("grpc.max_send_message_length", wire_limit),
            ("grpc.so_reuseport", 0),
            # The host's Channel and Describe reach the server while the load phase holds
            # the event loop (a model's import): gRPC would cancel an RPC the server has not
            # taken up within 30 s by default, breaking the channel of a worker whose tools
            # take longer to load. The load timeout bounds the wait instead.
            ("grpc.server_max_unrequested_time_in_server", 7 * 24 * 3600),
        ]
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if self.socket_path is None:
            assert self.config.token
            interceptors.append(TokenInterceptor(self.config.token))
        if self.tracing is not None:
            interceptors.extend(telemetry.server_interceptors(self.tracing))
        self.interceptors = tuple(interceptors)
        server = grpc.aio.server(options=options, interceptors=interceptors)
        servicer = self.servicer if self.tracing is None else telemetry.GeneratorStreams(self.servicer)
        pb_grpc.add_WorkerServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        if self.socket_path is not None:
            try:
                sockets.prepare(self.socket_path)
                bound = server.add_insecure_port(f"unix:{self.socket_path}")
                if not bound:
                    raise BindError(f"cannot listen on unix:{self.socket_path}")
                os.chmod(self.socket_path, 0o600)
            except (OSError, RuntimeError) as exc:
                raise BindError(f"cannot listen on unix:{self.socket_path}: {exc}") from exc
            line = f"PYVISOR|{PROTOCOL_VERSION}|unix|{self.socket_path}\n"
        else:
            try:
                port = server.add_insecure_port("127.0.0.1:0")
            except RuntimeError as exc:
                raise BindError(f"cannot listen on 127.0.0.1: {exc}") from exc
            if not port:
                raise BindError("cannot listen on 127.0.0.1")
            line = f"PYVISOR|{PROTOCOL_VERSION}|tcp|127.0.0.1:{port}\n"
        await server.start()
        self._server = server
        log.info(
            "worker serving",
            extra={"address": line.rsplit("|", 1)[1].strip(), "tools": self.servicer.tool_names},
        )
        return line

    def request_stop(self, grace: float | None = None) -> None:
        """Begin a graceful stop (idempotent; the first grace wins). Call on the loop thread."""
        if self._stop_grace is not None or self._stop_requested is None:
            return
        self._stop_grace = self.config.shutdown_grace if grace is None else grace
        self._stop_requested.set()
        self._stop_task = asyncio.get_running_loop().create_task(self._stop())

    async def _stop(self) -> None:
        assert self._server is not None and self._stopped is not None
        grace = self._stop_grace
        log.info("worker stopping", extra={"grace_seconds": grace,
                                           "in_flight": self.servicer.in_flight})
        try:
            await self.health.enter_graceful_shutdown()
            began = asyncio.get_running_loop().time()
            await self.servicer.drain_channels(grace or 0.0)
            spent = asyncio.get_running_loop().time() - began
            await self._server.stop(max((grace or 0.0) - spent, 0.0))
        finally:
            self.executor.shutdown(wait=False, cancel_futures=True)
            if self.socket_path is not None:
                sockets.remove(self.socket_path, self.config.remove_socket_dir)
            log.info("worker stopped")
            self._stopped.set()

    async def wait_stopped(self) -> None:
        """Wait until a requested stop has completed."""
        assert self._stopped is not None
        await self._stopped.wait()

    async def stop(self, grace: float | None = None) -> None:
        """Request a stop and wait for it."""
        self.request_stop(grace)
        await self.wait_stopped()


def _shared(config: WorkerConfig) -> Shared | None:
    """The shared-memory arenas the host passed, mapped (None without them)."""
    if config.shm_in_fd is None or config.shm_out_fd is None:
        return None
    return Shared(
        config.shm_in_fd, config.shm_out_fd, threshold=config.shm_threshold,
        max_payload=config.shm_max_payload, retain=config.shm_retain,
        trim_after=config.shm_trim_after,
    )
