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
