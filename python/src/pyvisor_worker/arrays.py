"""Typed arrays and Arrow tables beside a call's JSON.

A call's ``Array`` messages become keyword arguments: a tensor as a read-only numpy array of
its dtype and shape over the bytes where they arrived (shared memory, or the frame), an
Arrow array as a ``pyarrow.Table`` read in place from its IPC stream. A tool returning an
array (a numpy array, any object with ``__dlpack__``, a ``pyarrow.Table`` or
``RecordBatch``), or a dict whose values include arrays, sends them back the same way.

numpy and pyarrow are optional (the ``data`` extra): they are imported only when an array
arrives or a value that is one of theirs is returned, so a worker that never sees an array
never loads them.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pyvisor_worker._proto import worker_pb2 as pb

if TYPE_CHECKING:
    from pyvisor_worker.shm import Shared

TENSOR = pb.ARRAY_FORMAT_TENSOR
ARROW = pb.ARRAY_FORMAT_ARROW

DTYPES = frozenset({
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128",
})
"""The dtypes that cross: numpy's names, little-endian."""


class ArrayError(ValueError):
    """An array that cannot cross: an unknown dtype, a shape that does not fit its bytes,
    numpy or pyarrow missing."""


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise ArrayError(
            "a typed array needs numpy in the worker's environment: "
            "pip install 'pyvisor-worker[data]'") from None
    return numpy


def _pyarrow() -> Any:
    try:
        import pyarrow  # type: ignore[import-untyped]
    except ImportError:
        raise ArrayError(
            "an Arrow table needs pyarrow in the worker's environment: "
            "pip install 'pyvisor-worker[data]'") from None
    return pyarrow


def read(array: Any, shared: Shared | None) -> Any:
    """The value of a wire ``Array`` a host sent: its bytes inline, or read in place in the
    input arena. ArrayError (a ValueError) for one that cannot be read."""
    data: bytes | memoryview = array.data
    if array.HasField("data_ref"):
        if shared is None:
            raise ArrayError(
                f"array '{array.name}' is in shared memory, which this call has none of "
                "(a data_ref is only valid on the runtime's Channel)")
        data = shared.payload(array.data_ref)
    return decode(array, data)


def decode(array: Any, data: bytes | memoryview) -> Any:
    """The value of a wire ``Array`` over ``data`` (its bytes), with no copy."""
    if array.format == ARROW:
        pa = _pyarrow()
        try:
            return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
        except (pa.lib.ArrowException, OSError) as exc:
            raise ArrayError(f"array '{array.name}' is not an Arrow IPC stream: {exc}") from None
    if array.format != TENSOR:
        raise ArrayError(f"array '{array.name}' has an unknown format {array.format}")
    if array.dtype not in DTYPES:
        raise ArrayError(f"array '{array.name}' has an unknown dtype '{array.dtype}'")
    np = _numpy()
    dtype = np.dtype(array.dtype).newbyteorder("<")
    shape = tuple(array.shape)
    count = 1
    for d in shape:
        count *= d
    if count * dtype.itemsize != len(data):
        raise ArrayError(
            f"array '{array.name}': shape {list(shape)} of {array.dtype} is "
            f"{count * dtype.itemsize} bytes, the data {len(data)}")
    return np.frombuffer(data, dtype=dtype, count=count).reshape(shape)


_PLAIN = frozenset({str, int, float, bool, type(None), bytes, bytearray, memoryview, list})
"""Types that are never arrays: the common results, checked in one set lookup."""


def kind(value: Any) -> int | None:
    """TENSOR or ARROW when ``value`` crosses as an array, else None."""
    if type(value) in _PLAIN:
        return None
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return TENSOR
    pa = sys.modules.get("pyarrow")
    if pa is not None and isinstance(value, (pa.Table, pa.RecordBatch)):
        return ARROW
    if hasattr(type(value), "__dlpack__"):
        return TENSOR
    return None


def split(value: Any) -> tuple[Any, dict[str, Any]]:
    """A returned value as (its JSON part, its arrays by name): an array itself is ``""``,
    a dict's array values are taken out by key."""
    t = type(value)
    if t in _PLAIN:
        return value, {}
    if isinstance(value, dict):
        arrays = None
        for k, v in value.items():
            if type(v) not in _PLAIN and isinstance(k, str) and kind(v) is not None:
                if arrays is None:
                    arrays = {}
                arrays[k] = v
        if arrays is None:
            return value, {}
        return {k: v for k, v in value.items() if k not in arrays}, arrays
    if kind(value) is not None:
        return None, {"": value}
    return value, {}


Place = Callable[[memoryview], Awaitable[Any]]
"""Puts bytes where they travel: returns (inline bytes, None) or (b"", SharedRef)."""

Reserve = Callable[[int], Awaitable[tuple[memoryview, Any] | None]]
"""A writable region of n bytes in shared memory and its SharedRef, or None to send inline."""


def tensor_bytes(name: str, value: Any) -> tuple[Any, memoryview]:
    """The wire description of a tensor value and a view of its bytes (copied only when it
    is not C-contiguous, little-endian, or a dtype numpy does not hold natively)."""
    np = _numpy()
    if not isinstance(value, np.ndarray):
        try:
            value = np.from_dlpack(value)
        except (TypeError, BufferError, RuntimeError) as exc:
            raise ArrayError(f"array '{name}' cannot be read through DLPack: {exc}") from None
    dtype = value.dtype
    if dtype.name not in DTYPES:
        raise ArrayError(
            f"array '{name}' has dtype {dtype}, which does not cross "
            f"(one of: {', '.join(sorted(DTYPES))})")
    if dtype.byteorder == ">":
        value = value.astype(dtype.newbyteorder("<"))
    if not value.flags.c_contiguous:
        value = value.copy(order="C")  # (ascontiguousarray would make a scalar 1-d)
    flat = value.reshape(-1).view(np.uint8) if value.size else np.empty(0, np.uint8)
    wire = pb.Array(name=name, format=TENSOR, dtype=dtype.name, shape=list(value.shape))
    return wire, memoryview(flat)


async def encode(name: str, value: Any, place: Place, reserve: Reserve,
                 release: Callable[[Any], None]) -> Any:
    """The wire ``Array`` of one returned array (``release`` gives back a reserved region
    that is not sent)."""
    if kind(value) == ARROW:
        return await _encode_arrow(name, value, reserve, release)
    wire, data = tensor_bytes(name, value)
    inline, ref = await place(data)
    if ref is not None:
        wire.data_ref.CopyFrom(ref)
    else:
        wire.data = inline
    return wire


async def _encode_arrow(name: str, value: Any, reserve: Reserve,
                        release: Callable[[Any], None]) -> Any:
    """An Arrow table or batch as an IPC stream, written once: straight into shared memory
    when large (its size measured first, without copying), else into the frame."""
    pa = _pyarrow()

    def write(sink: Any) -> None:
        with pa.ipc.new_stream(sink, value.schema) as writer:
            if isinstance(value, pa.Table):
                writer.write_table(value)
            else:
                writer.write_batch(value)

    mock = pa.MockOutputStream()
    write(mock)
    n = mock.size()
    wire = pb.Array(name=name, format=ARROW)
    region = await reserve(n)
    if region is None:
        sink = pa.BufferOutputStream()
        write(sink)
        wire.data = sink.getvalue().to_pybytes()
        return wire
    view, ref = region
    try:
        write(pa.FixedSizeBufferWriter(pa.py_buffer(view)))
    except BaseException:
        release(ref)  # reserved, written in part, never sent
        raise
    wire.data_ref.CopyFrom(ref)
    return wire


async def encode_all(
    arrays: dict[str, Any], shared: Shared | None, owned: set[int] | None,
) -> list[Any]:
    """The wire ``Array`` of each array, placed in the output arena from the threshold up
    (in place when built in one of ``owned``, a call's ``ctx.buffer`` regions). On any
    failure the regions already placed are given back before the exception propagates
    (ArrayError, PayloadTooLarge, cancellation)."""

    async def place(data: memoryview) -> tuple[bytes, Any]:
        if shared is not None and data.nbytes >= shared.threshold:
            return b"", await shared.place(data, owned)
        return bytes(data), None

    async def reserve(n: int) -> tuple[memoryview, Any] | None:
        if shared is None or n < shared.threshold:
            return None
        return await shared.reserve(n)

    def release(ref: Any) -> None:
        if shared is not None:
            shared.output.release([ref.offset])

    wire: list[Any] = []
    try:
        for name, value in arrays.items():
            wire.append(await encode(name, value, place, reserve, release))
    except BaseException:
        if shared is not None:
            shared.output.release([a.data_ref.offset for a in wire if a.HasField("data_ref")])
        raise
    return wire
