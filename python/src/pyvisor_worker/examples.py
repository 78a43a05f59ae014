"""Example tools used by the Go specs, the demo and the benchmarks. Names and parameters are
part of those tests' contract: keep them stable."""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from pyvisor_worker import GoError, ToolContext, tool

logger = logging.getLogger("pyvisor_worker.examples")


@tool
async def echo(value: Any) -> Any:
    """Return ``value`` unchanged (runs on the event loop)."""
    return value


@tool
def echo_sync(value: Any) -> Any:
    """Return ``value`` unchanged (runs in a worker thread)."""
    return value


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
async def sleep(seconds: float) -> float:
    """Sleep ``seconds`` on the event loop and return them; logs when cancelled."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        logger.info("sleep cancelled", extra={"seconds": seconds})
        raise
    return seconds


@tool
def wait_sync(seconds: float, ctx: ToolContext) -> bool:
    """Block a thread up to ``seconds`` waiting for cancellation; True if cancelled."""
    return ctx.wait_cancelled(seconds)


@tool(name="raise")
def fail(message: str = "boom", type: str = "ValueError") -> None:
    """Raise the builtin exception ``type`` (ValueError, RuntimeError, KeyError...) with ``message``."""
    cls = getattr(builtins, type, None)
    if not (isinstance(cls, builtins.type) and issubclass(cls, Exception)):
        raise TypeError(f"not a builtin exception type: {type!r}")
    raise cls(message)


class UserBaseError(BaseException):
    """A BaseException subclass that is not an Exception, as some libraries define."""


_BASE_EXCEPTIONS: dict[str, type[BaseException]] = {
    "CancelledError": asyncio.CancelledError,
    "KeyboardInterrupt": KeyboardInterrupt,
    "SystemExit": SystemExit,
    "GeneratorExit": GeneratorExit,
    "UserBaseError": UserBaseError,
}


def _base_exception(type: str) -> BaseException:
    cls = _BASE_EXCEPTIONS.get(type)
    if cls is None:
        raise TypeError(f"not one of {sorted(_BASE_EXCEPTIONS)}: {type!r}")
    return cls(f"raised by the tool: {type}")


@tool
def raise_base(type: str) -> None:
    """Raise a BaseException that is not an Exception (``CancelledError``,
    ``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``, ``UserBaseError``) in a thread."""
    raise _base_exception(type)


@tool
async def raise_base_async(type: str) -> None:
    """``raise_base`` on the event loop."""
    raise _base_exception(type)


@tool
def raise_base_stream(type: str) -> Iterator[int]:
    """Yield one chunk, then ``raise_base`` (a sync generator)."""
    yield 0
    raise _base_exception(type)


@tool
async def raise_base_stream_async(type: str) -> AsyncIterator[int]:
    """Yield one chunk, then ``raise_base`` (an async generator)."""
    yield 0
    raise _base_exception(type)


@tool
def ignore_cancel_sync(seconds: float) -> float:
    """Block a thread ``seconds``, never looking at ``ctx.cancelled``."""
    time.sleep(seconds)
    return seconds


@tool
async def swallow_cancel(seconds: float) -> float:
    """Sleep ``seconds`` on the event loop, swallowing every cancellation."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            await asyncio.sleep(left)
        except asyncio.CancelledError:  # ignoring cancellation is the point
            logger.info("cancellation swallowed")
    return seconds


@tool
def spawn_children(seconds: float = 1000.0) -> dict[str, int]:
    """Start three ``sleep`` processes that would outlive a careless worker: a child, a
    child in a session of its own, and an orphaned grandchild; return their pids."""
    sleep = ["sleep", str(seconds)]
    child = subprocess.Popen(sleep)
    session = subprocess.Popen(sleep, start_new_session=True)
    orphan = subprocess.run(  # the shell exits at once: its sleep loses its parent
        ["sh", "-c", f"setsid sleep {seconds} >/dev/null 2>&1 & echo $!"],
        capture_output=True, text=True, check=True,
    )
    return {"child": child.pid, "session": session.pid, "orphan": int(orphan.stdout.strip())}


@tool
async def crash(after_seconds: float = 0.0, code: int = 70) -> None:
    """Sleep, then kill the worker process with ``os._exit(code)``."""
    await asyncio.sleep(after_seconds)
    os._exit(code)


@tool
async def hang(seconds: float = 3600.0) -> None:
    """Block the event loop with time.sleep: heartbeats, Shutdown and SIGTERM go unanswered."""
    logger.info("hanging", extra={"seconds": seconds})
    time.sleep(seconds)  # noqa: ASYNC251 - wedging the loop is the point


@tool
async def ignore_sigterm() -> bool:
    """Make the worker ignore SIGTERM (to test the SIGKILL escalation)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return True


@tool
async def count(n: int, interval: float = 0.0) -> AsyncIterator[dict[str, int]]:
    """Stream ``{"i": i}`` for i in range(n), ``interval`` seconds apart."""
    sent = 0
    try:
        for i in range(n):
            if i and interval:
                await asyncio.sleep(interval)
            yield {"i": i}
            sent += 1
    finally:
        logger.info("count stream closed", extra={"chunks_sent": sent, "n": n})


@tool
def count_sync(n: int, interval: float = 0.0) -> Iterator[dict[str, int]]:
    """Like ``count``, as a sync generator stepped in worker threads."""
    sent = 0
    try:
        for i in range(n):
            if i and interval:
                time.sleep(interval)
            yield {"i": i}
            sent += 1
    finally:
        logger.info("count stream closed", extra={"chunks_sent": sent, "n": n})


@tool
async def raise_after(n: int) -> AsyncIterator[dict[str, int]]:
    """Stream ``{"i": i}`` for i in range(n), then raise RuntimeError."""
    for i in range(n):
        yield {"i": i}
    raise RuntimeError(f"failed after {n} chunks")


@tool
def large(size: int) -> bytes:
    """Return ``size`` bytes (as the result's payload)."""
    return b"x" * size


@tool
def payload_size(ctx: ToolContext) -> int:
    """Return the size of the call's payload."""
    return len(ctx.payload)


@tool
def echo_payload(ctx: ToolContext) -> Any:
    """Return the call's payload (copied once into the result)."""
    return ctx.payload


@tool
async def echo_payload_async(ctx: ToolContext) -> Any:
    """Return the call's payload, from the event loop."""
    return ctx.payload


@tool
def payload_info(ctx: ToolContext) -> dict[str, Any]:
    """How the payload arrived: its size, type, whether it is read-only and whether its
    bytes lie in shared memory (read in place, no copy)."""
    p = ctx.payload
    return {
        "size": len(p),
        "type": type(p).__name__,
        "readonly": memoryview(p).readonly,
        "shared": ctx.in_shared_memory(p),
    }


@tool
def fill(size: int, value: int, ctx: ToolContext) -> Any:
    """Return ``size`` bytes of ``value``, built in place in ``ctx.buffer``."""
    import ctypes

    from pyvisor_worker.shm import address

    buf = ctx.buffer(size)
    if size:
        ctypes.memset(address(buf), value, size)  # one pass, no temporary of size bytes
    return buf


@tool
def fill_slice(size: int, start: int, stop: int, ctx: ToolContext) -> Any:
    """Return ``buf[start:stop]`` of a ``ctx.buffer(size)`` whose byte i is i % 251."""
    buf = ctx.buffer(size)
    buf[:] = bytes(i % 251 for i in range(251)) * (size // 251) + bytes(range(size % 251))
    return buf[start:stop]


@tool
def sum_float32(ctx: ToolContext) -> dict[str, float]:
    """Sum the payload as float32 with numpy, read in place; also report how long numpy
    itself took (seconds), the floor of the call's time."""
    import numpy as np  # the data extra: imported only by the tools that use it

    began = time.perf_counter()
    total = float(np.frombuffer(ctx.payload, dtype=np.float32).sum(dtype=np.float64))
    return {"sum": total, "seconds": time.perf_counter() - began}


@tool
def frames(n: int, size: int) -> Iterator[bytes]:
    """Stream ``n`` chunks of ``size`` bytes, chunk i filled with byte i % 256."""
    for i in range(n):
        yield bytes([i % 256]) * size


@tool
def hold_payload(seconds: float, ctx: ToolContext) -> int:
    """Read the payload, then wait ``seconds`` (or until cancelled); return its size."""
    n = len(ctx.payload)
    ctx.wait_cancelled(seconds)
    return n


@tool
def echo_array(x: Any) -> Any:
    """Return the array or Arrow table it was given, as it is."""
    return x


@tool
def array_info(x: Any, ctx: ToolContext) -> dict[str, Any]:
    """Describe an array argument: a tensor's dtype, shape and flags, a table's rows and
    nulls, and whether its bytes lie in shared memory (read in place)."""
    if hasattr(x, "num_rows"):  # a pyarrow Table
        first = x.column(0).chunk(0).buffers()[1] if x.num_columns and x.num_rows else None
        return {"kind": "table", "rows": x.num_rows, "columns": x.column_names,
                "nulls": [x.column(i).null_count for i in range(x.num_columns)],
                "shared": first is not None and ctx.in_shared_memory(first)}
    return {"kind": "tensor", "dtype": x.dtype.name, "shape": list(x.shape),
            "writeable": bool(x.flags.writeable),
            "shared": x.nbytes > 0 and ctx.in_shared_memory(x)}


@tool
def scale_array(x: Any, factor: float, label: str = "") -> dict[str, Any]:
    """Mix JSON and arrays both ways: the label and sum come back as JSON, the scaled array
    as an array."""
    return {"label": label, "sum": float(x.sum()), "scaled": x * factor}


@tool
def array_frames(n: int, height: int, width: int) -> Iterator[Any]:
    """Yield n uint8 frames of height x width, frame i filled with i % 256 (video-like)."""
    import numpy as np

    for i in range(n):
        yield np.full((height, width), i % 256, dtype=np.uint8)


@tool
async def call_go_array(name: str, size: int, ctx: ToolContext) -> Any:
    """Call a Go callback with a float32 ramp of size elements and a JSON note; return what
    it returned (arrays included) and whether its arrays arrived in shared memory."""
    import numpy as np

    ramp = np.arange(size, dtype=np.float32)
    got = await ctx.call_go(name, x=ramp, note="ramp")
    if isinstance(got, dict):
        shared = {k: ctx.in_shared_memory(v) for k, v in got.items() if hasattr(v, "dtype")}
        return {**got, "shared": shared}
    return got


@tool
def session_set(key: str, value: Any, ctx: ToolContext) -> None:
    """Store ``value`` under ``key`` in the call's session."""
    if ctx.session is None:
        raise RuntimeError("session_set needs a session")
    ctx.session[key] = value


@tool
def session_get(key: str, ctx: ToolContext) -> Any:
    """Return the session's value for ``key`` (KeyError when missing)."""
    if ctx.session is None:
        raise RuntimeError("session_get needs a session")
    return ctx.session[key]


@tool
def whoami(ctx: ToolContext) -> dict[str, Any]:
    """Return pid, worker_id, correlation_id, session_id and metadata of the call."""
    return {
        "pid": os.getpid(),
        "worker_id": ctx.worker_id,
        "correlation_id": ctx.correlation_id,
        "session_id": ctx.session_id,
        "metadata": ctx.metadata,
    }


@tool
def print_stdout(text: str) -> bool:
    """``print(text)``: it must land on stderr, never on the handshake stdout."""
    print(text)
    return True


@tool
def log(message: str, level: str = "info", extra: dict[str, Any] | None = None) -> bool:
    """Log ``message`` at ``level`` through the ``pyvisor_worker.examples`` logger, with
    ``extra`` fields on the record."""
    logging.getLogger("pyvisor_worker.examples").log(
        logging.getLevelNamesMapping().get(level.upper(), logging.INFO), message, extra=extra
    )
    return True


@tool
def write_stderr(text: str) -> bool:
    """Write ``text`` and a newline straight to stderr."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
    return True


# --- callbacks into Go: these call the Go functions the host registered -------------------


@tool
def greet(user_id: int, ctx: ToolContext) -> str:
    """Greet a user whose name the Go callback ``lookup_user`` knows (sync: blocks)."""
    user = ctx.call_go("lookup_user", id=user_id)
    return f"Hello, {user['name']}!"


@tool
async def greet_async(user_id: int, ctx: ToolContext) -> str:
    """Greet a user through the Go callback ``lookup_user`` (async: awaits)."""
    user = await ctx.call_go("lookup_user", id=user_id)
    return f"Hello, {user['name']}!"


@tool
def greet_each(user_ids: list[int], ctx: ToolContext) -> Iterator[str]:
    """Yield one greeting per user, each looked up with the Go callback ``lookup_user``."""
    for user_id in user_ids:
        user = ctx.call_go("lookup_user", id=user_id)
        yield f"Hello, {user['name']}!"


@tool
async def greet_each_async(user_ids: list[int], ctx: ToolContext) -> AsyncIterator[str]:
    """``greet_each`` as an async generator."""
    for user_id in user_ids:
        user = await ctx.call_go("lookup_user", id=user_id)
        yield f"Hello, {user['name']}!"


def _go_error(exc: GoError) -> dict[str, Any]:
    return {"error": {"kind": exc.kind, "message": exc.message, "callback": exc.callback}}


@tool
async def call_go(name: str, ctx: ToolContext, args: dict[str, Any] | None = None) -> Any:
    """Call Go callback ``name`` with ``args``: ``{"result": ...}``, or ``{"error": {kind,
    message, callback}}`` when it raised GoError. A cancellation is logged, then goes on."""
    try:
        return {"result": await ctx.call_go(name, **(args or {}))}
    except GoError as exc:
        return _go_error(exc)
    except asyncio.CancelledError:
        logger.warning("call_go %s: the tool call was cancelled while the callback ran", name)
        raise


@tool
def call_go_sync(name: str, ctx: ToolContext, args: dict[str, Any] | None = None) -> Any:
    """``call_go`` from a sync tool (blocking, in a worker thread)."""
    try:
        return {"result": ctx.call_go(name, **(args or {}))}
    except GoError as exc:
        if exc.kind == GoError.CANCELLED:
            logger.warning("call_go_sync %s: the tool call was cancelled while the callback ran",
                           name)
        return _go_error(exc)


@tool
async def call_go_unguarded(name: str, ctx: ToolContext, args: dict[str, Any] | None = None) -> Any:
    """Call Go callback ``name`` and let a GoError propagate (a ToolError to the caller)."""
    return await ctx.call_go(name, **(args or {}))


@tool
async def call_go_many(name: str, n: int, ctx: ToolContext) -> int:
    """Call no-op-like Go callback ``name`` n times in a row (the callback benchmark)."""
    for _ in range(n):
        await ctx.call_go(name)
    return n


@tool
async def call_go_timeout(name: str, seconds: float, ctx: ToolContext) -> str:
    """Call Go callback ``name`` but give up after ``seconds`` (the call itself goes on)."""
    try:
        async with asyncio.timeout(seconds):
            await ctx.call_go(name)
    except TimeoutError:
        return "timed out"
    return "answered"
