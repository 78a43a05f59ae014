"""Bearer-token check for TCP workers: every call, health included, needs the worker's token."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from pyvisor_worker.errors import abort
from pyvisor_worker.wire import AUTHORIZATION_KEY, UNAUTHENTICATED


def _denied(handler: Any, message: str) -> Any:
    """A handler of the same RPC kind as ``handler`` that fails with UNAUTHENTICATED."""

    async def deny(request: Any, context: Any) -> Any:
        await abort(context, grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED, message)

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny, **kwargs)
    return grpc.unary_unary_rpc_method_handler(deny, **kwargs)


class TokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Reject calls whose ``authorization`` metadata is not ``Bearer <token>``.

    Compared with hmac.compare_digest; the token is never logged.
    """

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("token must not be empty")
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == AUTHORIZATION_KEY:
                got = value.encode() if isinstance(value, str) else bytes(value)
                if hmac.compare_digest(got, self._expected):
                    return handler
                return _denied(handler, "invalid worker token")
        return _denied(handler, "missing worker token (authorization: Bearer <token>)")
