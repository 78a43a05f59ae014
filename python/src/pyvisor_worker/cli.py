"""Command line: parse arguments, set up stdio and logging, import tools, serve, exit.

Exit codes: 0 normal stop, 2 usage error, 3 a tools module failed to import (or define its
tools), 4 cannot bind/listen, 5 the package is not the one the Go runtime embeds (its stamped
source digest differs from $PYVISOR_SOURCE_DIGEST). A second SIGTERM/SIGINT during a stop exits at once (128+signal).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import TextIO

from pyvisor_worker import jsonlog, reaper, sockets, source, telemetry, watchdog
from pyvisor_worker.config import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_SHUTDOWN_GRACE,
    DEFAULT_THREADS,
    WorkerConfig,
)
from pyvisor_worker.server import BindError, Worker
from pyvisor_worker.tools import Tool, discover

log = logging.getLogger("pyvisor_worker")

TOKEN_ENV = "PYVISOR_WORKER_TOKEN"
CALLBACKS_ENV = "PYVISOR_CALLBACKS"
EXIT_OK, EXIT_USAGE, EXIT_IMPORT, EXIT_BIND, EXIT_VERSION = 0, 2, 3, 4, 5
# How long exit paths wait for pending spans: a normal stop, and an exit that must be quick.
FLUSH_TIMEOUT, QUICK_FLUSH_TIMEOUT = 5.0, 0.5


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    """The worker's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m pyvisor_worker",
        description="Serve the @tool functions of Python modules to the pyvisor Go runtime.",
    )
    p.add_argument("--tools", action="append", required=True, metavar="MODULE",
                   help="module whose @tool functions are served (repeatable)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket", metavar="PATH", help="listen on this Unix socket")
    where.add_argument("--tcp", action="store_true",
                       help=f"listen on 127.0.0.1 (random port); token from ${TOKEN_ENV}")
    p.add_argument("--worker-id", default="", help="id written on every log line")
    p.add_argument("--parent-pid", type=int, default=None,
                   help="exit when this process is no longer our parent")
    p.add_argument("--max-message-bytes", type=_positive_int, default=DEFAULT_MAX_MESSAGE_BYTES)
    p.add_argument("--shutdown-grace", type=_non_negative_float, default=DEFAULT_SHUTDOWN_GRACE,
                   metavar="SECONDS")
    p.add_argument("--threads", type=_positive_int, default=DEFAULT_THREADS,
                   help="threads for sync tools")
    p.add_argument("--remove-socket-dir", action="store_true",
                   help="also remove the socket's directory on exit")
    p.add_argument("--log-level", choices=list(jsonlog.LEVELS), default="info")
    p.add_argument("--log-fd", type=int, default=None, metavar="FD",
                   help="write the JSON log records and span records to this inherited file "
                        "descriptor instead of stderr (stderr then carries only what user code "
                        "writes, as plain text)")
    p.add_argument("--shm-in-fd", type=int, default=None, metavar="FD",
                   help="the pool's input arena, an inherited memory file (mapped read-only)")
    p.add_argument("--shm-out-fd", type=int, default=None, metavar="FD",
                   help="this worker's output arena, an inherited memory file")
    p.add_argument("--shm-threshold", type=_positive_int, default=64 * 1024, metavar="BYTES")
    p.add_argument("--shm-max-payload", type=_positive_int, default=2 * 1024**3, metavar="BYTES")
    p.add_argument("--shm-retain", type=int, default=0, metavar="BYTES")
    p.add_argument("--shm-trim-after", type=_non_negative_float, default=0.0, metavar="SECONDS")
    return p


def parse(argv: Sequence[str] | None, environ: dict[str, str] | os._Environ[str]) -> WorkerConfig:
    """Parse ``argv`` into a config (argparse exits 2 on a usage error)."""
    p = parser()
    ns = p.parse_args(argv)
    token: str | None = None
    if ns.tcp:
        token = environ.get(TOKEN_ENV, "")
        if not token:
            p.error(f"--tcp needs a non-empty token in ${TOKEN_ENV}")
    callbacks: tuple[str, ...] = ()
    if environ.get(CALLBACKS_ENV):
        try:
            names = json.loads(environ[CALLBACKS_ENV])
        except ValueError:
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            p.error(f"${CALLBACKS_ENV} must be a JSON array of callback names")
        callbacks = tuple(names)
    if (ns.shm_in_fd is None) != (ns.shm_out_fd is None):
        p.error("--shm-in-fd and --shm-out-fd go together")
    return WorkerConfig(
        tools=tuple(ns.tools),
        socket=os.path.abspath(ns.socket) if ns.socket else None,
        token=token,
        worker_id=ns.worker_id,
        parent_pid=ns.parent_pid,
        max_message_bytes=ns.max_message_bytes,
        shutdown_grace=ns.shutdown_grace,
        threads=ns.threads,
        remove_socket_dir=ns.remove_socket_dir,
        log_level=ns.log_level,
        log_fd=ns.log_fd,
        callbacks=callbacks,
        shm_in_fd=ns.shm_in_fd,
        shm_out_fd=ns.shm_out_fd,
        shm_threshold=ns.shm_threshold,
        shm_max_payload=ns.shm_max_payload,
        shm_retain=ns.shm_retain,
        shm_trim_after=ns.shm_trim_after,
    )


def log_stream(fd: int | None) -> TextIO | None:
    """The records' own channel: the inherited ``fd``, kept from the tools' subprocesses
    (None: stderr)."""
    if fd is None:
        return None
    os.set_inheritable(fd, False)
    return open(fd, "w", buffering=1, encoding="utf-8", errors="replace", closefd=True)


def import_tools(names: Sequence[str]) -> list[ModuleType] | None:
    """Import the tools modules; log and return None when one fails."""
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except (Exception, SystemExit) as exc:
            log.error("cannot import tools module '%s': %s: %s", name, type(exc).__name__, exc,
                      exc_info=exc, extra={"tools_module": name})
            return None
    return modules


async def serve(config: WorkerConfig, worker: Worker, handshake_fd: int,
                load: Callable[[], Mapping[str, Tool] | None] | None = None) -> int:
    """Start ``worker``, write the handshake line to ``handshake_fd``, then ``load`` its
    tools (the load phase: imports that take minutes, a model's, do not hold up the
    handshake; nothing is served until they are in, and the host waits in Describe), serve
    until stopped. A load that fails exits with EXIT_IMPORT, its traceback logged."""
    try:
        line = await worker.start()
    except BindError as exc:
        log.error("%s", exc)
        return EXIT_BIND
    loop = asyncio.get_running_loop()
    signals_seen: list[int] = []

    def on_signal(signum: int) -> None:
        signals_seen.append(signum)
        if len(signals_seen) > 1:
            log.warning("second signal %s; exiting now", signal.Signals(signum).name)
            reaper.kill_descendants()
            sockets.remove(worker.socket_path, config.remove_socket_dir)
            if worker.tracing is not None:
                worker.tracing.shutdown(QUICK_FLUSH_TIMEOUT)
            _flush()
            os._exit(128 + signum)
        log.info("received %s; stopping", signal.Signals(signum).name)
        worker.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    os.write(handshake_fd, line.encode())
    os.close(handshake_fd)
    if load is not None:
        tools = _load(config, load)  # on the loop: nothing runs before the tools are in
        if tools is None:
            worker.servicer.load_failed = True  # before any queued Describe is answered
            await worker.stop(0)
            return EXIT_IMPORT
        worker.load(tools)
    await worker.wait_stopped()
    return EXIT_OK


def _load(config: WorkerConfig,
          load: Callable[[], Mapping[str, Tool] | None]) -> Mapping[str, Tool] | None:
    """Run the load phase, logging when it starts, every 10 s while it lasts, and how
    long it took."""
    modules = ", ".join(config.tools)
    log.info("loading tools modules %s", modules, extra={"tools_modules": modules})
    began = time.monotonic()
    done = threading.Event()

    def still_loading() -> None:
        while not done.wait(10.0):
            log.info("still loading tools modules %s (%.0f s)", modules, time.monotonic() - began,
                     extra={"tools_modules": modules, "elapsed_s": round(time.monotonic() - began, 1)})

    threading.Thread(target=still_loading, name="pyvisor-loading", daemon=True).start()
    try:
        tools = load()
    finally:
        done.set()
    if tools is not None:
        took = time.monotonic() - began
        log.info("tools loaded in %.1f s", took,
                 extra={"tools_modules": modules, "elapsed_s": round(took, 3), "tools": sorted(tools)})
    return tools


def load_tools(names: Sequence[str]) -> Mapping[str, Tool] | None:
    """Import the tools modules and collect their tools; log and return None on failure."""
    modules = import_tools(names)
    if modules is None:
        return None
    try:
        tools = discover(modules)
    except (TypeError, ValueError) as exc:
        log.error("cannot load the tools of %s: %s", ", ".join(names), exc, exc_info=exc)
        return None
    if not tools:
        log.warning("no @tool functions found in %s", ", ".join(names))
    return tools


def _flush() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()


def _busy_threads(timeout: float) -> bool:
    """Join leftover non-daemon threads for up to ``timeout``; True if some are still running."""
    others = [t for t in threading.enumerate()
              if t is not threading.current_thread() and not t.daemon]
    for t in others:
        t.join(timeout / max(len(others), 1))
    return any(t.is_alive() for t in others)


def run(argv: Sequence[str] | None = None) -> int:
    """Everything ``main`` does except the final exit; returns the exit code."""
    # (a) keep the real stdout for the handshake only; everything else goes to stderr.
    handshake_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        config = parse(argv, os.environ)
    except SystemExit as exc:
        os.close(handshake_fd)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    os.environ.pop(TOKEN_ENV, None)  # tools and their subprocesses never see it
    reaper.become_subreaper()  # what tools start stays below the worker, to die with it
    # (b) JSON logs on stderr; tracing if the OTEL_* / PYVISOR_TRACE_* variables ask for it.
    jsonlog.configure(config.log_level, config.worker_id, log_stream(config.log_fd))
    expected, mine = os.environ.get(source.DIGEST_ENV, ""), source.digest()
    if expected and mine and expected != mine:
        log.error("this pyvisor-worker package (source %s) is not the one the Go runtime embeds "
                  "(source %s): install the runtime's own with its pyvisor setup command",
                  mine, expected)
        os.close(handshake_fd)
        return EXIT_VERSION
    tracing = telemetry.setup(os.environ, config.worker_id)
    try:
        return _serve_tools(config, handshake_fd, tracing)
    finally:
        if tracing is not None:
            tracing.shutdown(FLUSH_TIMEOUT)


def _serve_tools(config: WorkerConfig, handshake_fd: int, tracing: telemetry.Tracing | None) -> int:
    if config.parent_pid is not None:

        def cleanup() -> None:
            reaper.kill_descendants()
            sockets.remove(config.socket, config.remove_socket_dir)
            if tracing is not None:
                tracing.shutdown(QUICK_FLUSH_TIMEOUT)

        watchdog.start(config.parent_pid, cleanup)
    # (c)-(g) serve, then load the tools (the load phase: after the handshake).
    worker = Worker(config, {}, tracing)
    try:
        return asyncio.run(serve(config, worker, handshake_fd, lambda: load_tools(config.tools)))
    finally:
        sockets.remove(worker.socket_path, config.remove_socket_dir)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: run the worker and exit with its code."""
    code = run(argv)
    reaper.kill_descendants()  # whatever the tools started goes with the worker
    _flush()
    if _busy_threads(1.0):
        # a sync tool that ignores cancellation would keep the interpreter alive forever.
        log.warning("tool threads still running at exit; exiting without waiting for them")
        _flush()
        os._exit(code)
    sys.exit(code)
