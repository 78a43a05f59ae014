"""Shared memory with the host: the pool's input arena and this worker's output arena.

The host passes two sealed memory files when it starts the worker (``--shm-in-fd``,
``--shm-out-fd``). The input arena is mapped read-only: a call's payload arrives as a
``SharedRef`` and the tool sees it as a read-only ``memoryview`` over the mapping, with no
copy (``numpy.frombuffer`` and ``pyarrow.py_buffer`` read it in place). The output arena is
this worker's to allocate in: a result or chunk over the threshold is written there once
(or not at all, when the tool built it in ``ctx.buffer``) and sent as a ``SharedRef``; the
region stays allocated until the host sends a Release naming it.

The allocator is safe from the event loop and from tool threads. When the arena is full an
allocation waits for the host to release space (backpressure), until its call is cancelled.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import mmap
import os
import threading
from collections.abc import Callable
from typing import Any

from pyvisor_worker._proto import worker_pb2 as pb

log = logging.getLogger("pyvisor_worker.shm")

ALIGN = 4096
"""Every region starts on a page: it suits any dtype, and free pages can be given back."""

DEFAULT_THRESHOLD = 64 * 1024


class _PyBuffer(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [ctypes.POINTER(_PyBuffer)]
_PYBUF_SIMPLE = 0


def address(obj: Any) -> int:
    """The address of the first byte of a C-contiguous buffer (bytes, memoryview, a numpy
    array...): how a test proves an array lies inside the mapping, and how a result built
    in ``ctx.buffer`` is recognised without a copy."""
    view = _PyBuffer()
    _get_buffer(obj, ctypes.byref(view), _PYBUF_SIMPLE)
    try:
        return int(view.buf or 0)
    finally:
        _release_buffer(ctypes.byref(view))


def as_bytes(value: Any) -> memoryview:
    """``value``'s bytes as a flat, C-contiguous memoryview of format 'B' (copied only
    when the buffer is not contiguous)."""
    mv = value if isinstance(value, memoryview) else memoryview(value)
    if not mv.c_contiguous:
        mv = memoryview(mv.tobytes())
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    return mv


def _round_up(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


class PayloadTooLarge(ValueError):
    """A payload larger than the shared memory allows (the arena, or the per-payload cap).

    ``ctx.buffer`` raises it; a result over the limit fails its call with the host's
    ``ErrMessageTooLarge``."""


PayloadTooLarge.__module__ = "pyvisor_worker"


class OutputArena:
    """This worker's output arena: a first-fit allocator over the mapping."""

    def __init__(self, fd: int, *, retain: int = 0, trim_after: float = 0.0) -> None:
        self.size = os.fstat(fd).st_size
        self.map = mmap.mmap(fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.view = memoryview(self.map)
        self.base = address(self.map)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._free: list[list[int]] = [[0, self.size]]  # [offset, length], sorted, coalesced
        self._allocated: dict[int, int] = {}  # offset -> rounded length
        # Regions the host holds until it releases them: the offset it was sent -> the
        # allocation's start.
        self.handed: dict[int, int] = {}
        self._freed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retain = _round_up(retain)
        self._trim_after = trim_after
        self._touched = 0
        self._trim: asyncio.TimerHandle | None = None

    def in_use(self) -> int:
        with self._lock:
            return sum(self._allocated.values())

    def _take(self, n: int) -> int | None:
        m = _round_up(n)
        for i, (off, length) in enumerate(self._free):
            if length < m:
                continue
            if length == m:
                del self._free[i]
            else:
                self._free[i] = [off + m, length - m]
            self._allocated[off] = m
            self._touched = max(self._touched, off + m)
            return off
        return None

    def try_alloc(self, n: int) -> int | None:
        """An offset of ``n`` free bytes, or None when the arena is full now."""
        if n <= 0 or _round_up(n) > self.size:
            raise PayloadTooLarge(f"{n} bytes do not fit an output arena of {self.size} bytes")
        with self._lock:
            return self._take(n)

    async def alloc(self, n: int) -> int:
        """Allocate ``n`` bytes, waiting (cancellably) while the arena is full."""
        while True:
            off = self.try_alloc(n)
            if off is not None:
                return off
            if self._freed is None:
                self._freed = asyncio.Event()
                self._loop = asyncio.get_running_loop()
            await self._freed.wait()

    def alloc_blocking(self, n: int, cancelled: Callable[[], bool]) -> int:
        """Allocate ``n`` bytes from a tool thread, waiting while the arena is full; raises
        ``InterruptedError`` once ``cancelled()``."""
        if n <= 0 or _round_up(n) > self.size:
            raise PayloadTooLarge(f"{n} bytes do not fit an output arena of {self.size} bytes")
        with self._cond:
            while True:
                off = self._take(n)
                if off is not None:
                    return off
                if cancelled():
                    raise InterruptedError("the call was cancelled while waiting for shared memory")
                self._cond.wait(0.05)

    def free(self, off: int) -> None:
        """Give a region back (from the event loop)."""
        with self._lock:
            m = self._allocated.pop(off, None)
            if m is None:
                return
            free = self._free
            i = 0
            while i < len(free) and free[i][0] < off:
                i += 1
            free.insert(i, [off, m])
            if i + 1 < len(free) and free[i][0] + free[i][1] == free[i + 1][0]:
                free[i][1] += free[i + 1][1]
                del free[i + 1]
            if i > 0 and free[i - 1][0] + free[i - 1][1] == free[i][0]:
                free[i - 1][1] += free[i][1]
                del free[i]
            self._cond.notify_all()
        if self._freed is not None:
            self._freed.set()
            self._freed = None
        self._schedule_trim()

    def release(self, offsets: Any) -> None:
        """The host is done with these handed regions."""
        for off in offsets:
            start = self.handed.pop(off, None)
            if start is not None:
                self.free(start)
            else:
                log.warning("host released output region %d, which it does not hold", off)

    def owner(self, off: int, n: int) -> int | None:
        """The allocated region holding ``[off, off+n)``, if any."""
        with self._lock:
            for start, m in self._allocated.items():
                if start <= off and off + n <= start + m:
                    return start
        return None

    def _schedule_trim(self) -> None:
        if self._trim_after <= 0 or self._touched <= self._retain:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._trim is not None:
            self._trim.cancel()
        self._trim = loop.call_later(self._trim_after, self.trim)

    def trim(self) -> None:
        """Give the pages of free space above the retained size back to the system."""
        self._trim = None
        with self._lock:
            for off, length in self._free:
                lo, hi = max(off, self._retain), min(off + length, self._touched)
                if lo < hi:
                    self.map.madvise(mmap.MADV_REMOVE, lo, hi - lo)
            high = self._retain
            for start, m in self._allocated.items():
                high = max(high, start + m)
            self._touched = high


def refs(result: Any) -> list[int]:
    """The output-arena offsets a Result names: its payload's and its arrays'."""
    offsets = [result.payload_ref.offset] if result.HasField("payload_ref") else []
    offsets.extend(a.data_ref.offset for a in result.arrays if a.HasField("data_ref"))
    return offsets


class Shared:
    """Both arenas of a worker, and the policy: what size goes through shared memory."""

    def __init__(self, in_fd: int, out_fd: int, *, threshold: int, max_payload: int,
                 retain: int = 0, trim_after: float = 0.0) -> None:
        self.input_size = os.fstat(in_fd).st_size
        self.input = mmap.mmap(in_fd, self.input_size, mmap.MAP_SHARED, mmap.PROT_READ)
        self.input_view = memoryview(self.input)
        self.input_base = address(self.input)
        os.close(in_fd)
        self.output = OutputArena(out_fd, retain=retain, trim_after=trim_after)
        os.close(out_fd)
        self.threshold = threshold
        self.max_payload = max_payload

    def payload(self, ref: Any) -> memoryview:
        """The read-only view of a payload the host placed in the input arena."""
        off, n = ref.offset, ref.length
        if n > self.input_size or off > self.input_size - n:
            raise ValueError(
                f"payload ref of {n} bytes at offset {off} lies outside the input arena "
                f"({self.input_size} bytes)")
        return self.input_view[off:off + n]

    def contains(self, obj: Any) -> bool:
        """Whether ``obj``'s bytes lie inside one of the two mappings."""
        n = memoryview(obj).nbytes
        at = address(obj)
        for base, size in ((self.input_base, self.input_size),
                           (self.output.base, self.output.size)):
            if base <= at and at + n <= base + size:
                return True
        return False

    def in_output(self, obj: Any) -> tuple[int, int] | None:
        """``(offset, allocation)`` when ``obj``'s bytes lie in an allocated output region."""
        n = memoryview(obj).nbytes
        off = address(obj) - self.output.base
        if off < 0 or off + n > self.output.size:
            return None
        start = self.output.owner(off, n)
        return None if start is None else (off, start)

    def check_size(self, n: int) -> None:
        if n > self.max_payload:
            raise PayloadTooLarge(f"{n} bytes are over the limit of {self.max_payload} bytes a payload")

    async def reserve(self, n: int) -> tuple[memoryview, Any]:
        """A writable output region of ``n`` bytes, handed to the host once written: its view
        and the SharedRef to send (free it with ``output.release`` if it is not sent)."""
        self.check_size(n)
        start = await self.output.alloc(n)
        self.output.handed[start] = start
        return self.output.view[start:start + n], pb.SharedRef(offset=start, length=n)

    async def place(self, data: memoryview, owned: set[int] | None) -> Any:
        """Put ``data`` in the output arena (copied once, or in place when it was built in
        one of ``owned``, the call's ``ctx.buffer`` regions) and hand it to the host:
        the SharedRef to send."""
        n = data.nbytes
        self.check_size(n)
        if owned:
            found = self.in_output(data)
            if found is not None and found[1] in owned:
                off, start = found
                owned.discard(start)
                self.output.handed[off] = start
                return pb.SharedRef(offset=off, length=n)
        view, ref = await self.reserve(n)
        view[:] = data
        return ref
