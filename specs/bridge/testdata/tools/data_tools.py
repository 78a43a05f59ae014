"""Tools that break the shared-memory contract, as hostile tool code could."""

from __future__ import annotations

from typing import Any

from pyvisor_worker import tool
from pyvisor_worker._proto import worker_pb2 as pb
from pyvisor_worker.shm import Shared


@tool
def forge(offset: int, length: int) -> bytes:
    """Return 1 MiB, but hand the host a ref of the caller's choosing."""

    async def forged(self: Shared, data: Any, owned: Any) -> Any:
        return pb.SharedRef(offset=offset, length=length)

    Shared.place = forged  # type: ignore[method-assign]
    return b"x" * (1 << 20)


@tool
def forge_array(offset: int, length: int) -> Any:
    """Return a float32 array, but hand the host a ref of the caller's choosing."""
    import numpy as np

    async def forged(self: Shared, data: Any, owned: Any) -> Any:
        return pb.SharedRef(offset=offset, length=length)

    Shared.place = forged  # type: ignore[method-assign]
    return np.zeros(1 << 18, dtype=np.float32)


@tool
def misshapen_array() -> Any:
    """Return an array whose shape says more bytes than it has, as a buggy worker could."""
    from pyvisor_worker import arrays

    real = arrays.tensor_bytes

    def lying(name: str, value: Any) -> Any:
        wire, data = real(name, value)
        wire.shape[0] += 1
        return wire, data

    arrays.tensor_bytes = lying  # type: ignore[assignment]
    return {"x": __import__("numpy").zeros(4, dtype="int32")}
