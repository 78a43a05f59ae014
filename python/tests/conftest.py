"""Shared fixtures: short temp dirs for Unix sockets, in-process workers, CLI workers."""

from __future__ import annotations

import asyncio
import io
import logging
import mmap
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from pyvisor_worker import examples
from pyvisor_worker._proto import worker_pb2 as pb
from pyvisor_worker._proto import worker_pb2_grpc as pb_grpc
from pyvisor_worker.config import WorkerConfig
from pyvisor_worker.jsonlog import JsonFormatter
from pyvisor_worker.server import Worker
from pyvisor_worker.tools import Tool, discover, make_tool

TESTS_DIR = Path(__file__).parent
SRC_DIR = TESTS_DIR.parent / "src"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short temp dir (Unix socket paths are limited to ~107 bytes); removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="pvw", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def tools_with(*fns: Callable[..., Any], **named: Callable[..., Any]) -> dict[str, Tool]:
    """The example tools plus ad-hoc tools built from local functions."""
    tools = dict(discover([examples]))
    for fn in fns:
        t = make_tool(fn)
        tools[t.name] = t
    for name, fn in named.items():
        tools[name] = make_tool(fn, name)
    return tools


@dataclass
class Running:
    worker: Worker
    stub: Any
    channel: grpc.aio.Channel
    address: str
    metadata: tuple[tuple[str, str], ...] = field(default_factory=tuple)


@pytest.fixture
async def start_worker(short_dir: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await start_worker(tools=..., **config)``: an in-process worker and a client stub."""
    running: list[Running] = []

    async def start(tools: Mapping[str, Tool] | None = None, **kwargs: Any) -> Running:
        if "token" not in kwargs:
            kwargs.setdefault("socket", str(short_dir / f"w{len(running)}.sock"))
        kwargs.setdefault("shutdown_grace", 0.0)
        tracing = kwargs.pop("tracing", None)
        config = WorkerConfig(**kwargs)
        worker = Worker(config, tools if tools is not None else tools_with(), tracing)
        line = await worker.start()
        _, version, kind, address = line.strip().split("|")
        assert version == "1"
        target = f"unix:{address}" if kind == "unix" else address
        channel = grpc.aio.insecure_channel(
            target,
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024),
                     ("grpc.max_send_message_length", 64 * 1024 * 1024)],
        )
        r = Running(worker, pb_grpc.WorkerServiceStub(channel), channel, address)
        running.append(r)
        return r

    yield start
    for r in running:
        await r.channel.close()
        if not r.worker.stopping:
            r.worker.request_stop(0)
        await r.worker.wait_stopped()


def args(**kwargs: Any) -> bytes:
    import json

    return json.dumps(kwargs).encode()


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` on the event loop until true (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Capture root-logger records as JSON lines (the worker's format)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test-worker"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


# --- CLI workers ----------------------------------------------------------------------------


@dataclass
class CliWorker:
    proc: subprocess.Popen[bytes]
    handshake: str
    stderr_path: Path

    @property
    def address(self) -> str:
        return self.handshake.strip().split("|", 3)[3]

    def stderr(self) -> str:
        return self.stderr_path.read_text()


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """Read the first stdout line of ``proc`` within ``timeout`` ("" on EOF)."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while not buf.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                raise AssertionError(f"no handshake within {timeout}s; got {buf!r}")
            chunk = os.read(proc.stdout.fileno(), 1)
            if not chunk:
                break
            buf += chunk
    finally:
        sel.close()
    return buf.decode()


def worker_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYVISOR_")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC_DIR), str(TESTS_DIR)])
    env.update(extra)
    return env


@pytest.fixture
def cli_worker(short_dir: Path) -> Iterator[Callable[..., CliWorker]]:
    """``cli_worker(*args, env=...)``: spawn ``python -m pyvisor_worker``; killed afterwards."""
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(*argv: str, env: dict[str, str] | None = None, handshake: bool = True) -> CliWorker:
        stderr_path = short_dir / f"stderr{len(procs)}.log"
        with stderr_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pyvisor_worker", *argv],
                stdout=subprocess.PIPE,
                stderr=err,
                env=env if env is not None else worker_env(),
            )
        procs.append(proc)
        line = read_line(proc, 20.0) if handshake else ""
        return CliWorker(proc, line, stderr_path)

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
async def cli_stub() -> AsyncIterator[Callable[[str], Any]]:
    """``cli_stub(socket_path)``: a WorkerService stub on a channel closed afterwards."""
    channels: list[grpc.aio.Channel] = []

    def make(path: str) -> Any:
        channel = grpc.aio.insecure_channel(f"unix:{path}")
        channels.append(channel)
        return pb_grpc.WorkerServiceStub(channel)

    yield make
    for ch in channels:
        await ch.close()


__all__ = ["args", "pb", "tools_with", "wait_for"]


@dataclass
class Arenas:
    """The host's side of a worker's two arenas: memfds it maps read-write."""

    input: mmap.mmap
    output: mmap.mmap
    in_fd: int
    out_fd: int

    def worker_fds(self) -> dict[str, int]:
        """Fresh fds for the worker (it closes them): the input one read-only."""
        return {"shm_in_fd": os.open(f"/proc/self/fd/{self.in_fd}", os.O_RDONLY),
                "shm_out_fd": os.dup(self.out_fd)}


@pytest.fixture
def arenas() -> Iterator[Any]:
    made: list[Arenas] = []

    def make(in_size: int = 64 * 4096, out_size: int = 64 * 4096) -> Arenas:
        in_fd, out_fd = os.memfd_create("test-in"), os.memfd_create("test-out")
        os.ftruncate(in_fd, in_size)
        os.ftruncate(out_fd, out_size)
        a = Arenas(mmap.mmap(in_fd, in_size), mmap.mmap(out_fd, out_size), in_fd, out_fd)
        made.append(a)
        return a

    yield make
    for a in made:
        os.close(a.in_fd)
        os.close(a.out_fd)
