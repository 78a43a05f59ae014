"""The machine's ceiling for a Python gRPC call: a grpc.aio echo server and nothing else.

Usage: python echo_server.py SOCKET_PATH [PARENT_PID]

Serves pyvisor.bench.Echo on the Unix socket SOCKET_PATH, under a generic handler:

- Unary (unary-unary) returns its request;
- Stream (stream-stream) answers every request with itself, in order, with the read/write
  API (``await context.read()`` / ``await context.write()``), grpc.aio's fastest idiom.

Requests and responses are pyvisor's ``Result`` message, so that the Go side can use its
generated type; no other pyvisor code runs. Prints one line ``ECHO|<socket path>`` on stdout
once serving. Exits on SIGTERM or SIGINT, and when its parent (PARENT_PID, by default the
parent it started with) is gone, removing its socket in every case it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator

import grpc

from pyvisor_worker._proto.worker_pb2 import Result

SERVICE = "pyvisor.bench.Echo"
# How long the parent watchdog lets the event loop stop gracefully before exiting anyway.
WATCHDOG_GRACE = 2.0


async def unary(request: Result, context: grpc.aio.ServicerContext) -> Result:
    return request


async def stream(requests: AsyncIterator[Result], context: grpc.aio.ServicerContext) -> None:
    while True:
        request = await context.read()
        if request is grpc.aio.EOF:
            return
        await context.write(request)


def remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def watch_parent(parent_pid: int, loop: asyncio.AbstractEventLoop, stop: asyncio.Event, path: str) -> None:
    """Poll the parent from a daemon thread, so that it works even if the loop is wedged."""

    def watch() -> None:
        idle = threading.Event()
        while os.getppid() == parent_pid:
            idle.wait(0.2)
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(stop.set)
        idle.wait(WATCHDOG_GRACE)
        remove(path)
        os._exit(0)

    threading.Thread(target=watch, name="echo-parent-watchdog", daemon=True).start()


async def serve(path: str, parent_pid: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watch_parent(parent_pid, loop, stop, path)

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Unary": grpc.unary_unary_rpc_method_handler(
                        unary,
                        request_deserializer=Result.FromString,
                        response_serializer=Result.SerializeToString,
                    ),
                    "Stream": grpc.stream_stream_rpc_method_handler(
                        stream,
                        request_deserializer=Result.FromString,
                        response_serializer=Result.SerializeToString,
                    ),
                },
            ),
        )
    )
    remove(path)  # a stale socket file
    if not server.add_insecure_port(f"unix:{path}"):
        raise SystemExit(f"echo_server: cannot listen on unix:{path}")
    try:
        await server.start()
        print(f"ECHO|{path}", flush=True)
        await stop.wait()
    finally:
        await server.stop(grace=None)
        remove(path)


def main() -> None:
    if len(sys.argv) not in (2, 3):
        raise SystemExit("usage: echo_server.py SOCKET_PATH [PARENT_PID]")
    path = sys.argv[1]
    parent_pid = int(sys.argv[2]) if len(sys.argv) == 3 else os.getppid()
    try:
        asyncio.run(serve(path, parent_pid))
    finally:
        remove(path)


if __name__ == "__main__":
    main()
