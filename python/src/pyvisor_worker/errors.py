"""Contract errors: a gRPC status plus a ``pyvisor-error`` trailing-metadata reason."""

from __future__ import annotations

from typing import Any, NoReturn

import grpc

from pyvisor_worker.wire import ERROR_KEY  # the reasons live in worker.proto: see wire.py


class CallRejected(Exception):
    """A call the worker refuses before (or instead of) running its tool: the unary RPCs
    turn it into a gRPC status, the channel into a ``failed`` frame."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


async def abort(context: Any, code: grpc.StatusCode, reason: str, message: str) -> NoReturn:
    """End the RPC with ``code`` and ``message``, tagging it with ``reason`` for the Go side."""
    context.set_trailing_metadata(((ERROR_KEY, reason),))
    await context.abort(code, message)
    raise AssertionError("unreachable: context.abort returned")  # pragma: no cover
