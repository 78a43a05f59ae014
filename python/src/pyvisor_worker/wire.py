"""The strings the wire contract defines once, in worker.proto: each enum value's ``(wire)``
option, read from the generated descriptors (Go reads the same ones: workerv1.Wire)."""

from __future__ import annotations

from typing import Any

from pyvisor_worker._proto import worker_pb2 as pb


def wire(enum: Any, value: int) -> str:
    """The wire string of ``value`` of the generated ``enum`` (e.g. ``pb.Reason``)."""
    options = enum.DESCRIPTOR.values_by_number[value].GetOptions()
    return str(options.Extensions[pb.wire])


# gRPC metadata keys of the unary RPCs.
ERROR_KEY = wire(pb.MetadataKey, pb.METADATA_KEY_ERROR_REASON)
CORRELATION_ID_KEY = wire(pb.MetadataKey, pb.METADATA_KEY_CORRELATION_ID)
AUTHORIZATION_KEY = wire(pb.MetadataKey, pb.METADATA_KEY_AUTHORIZATION)

# Reasons of a refused call (CallFailed.reason, the ERROR_KEY trailer).
UNKNOWN_TOOL = wire(pb.Reason, pb.REASON_UNKNOWN_TOOL)
INVALID_ARGUMENT = wire(pb.Reason, pb.REASON_INVALID_ARGUMENT)
WRONG_CALL_KIND = wire(pb.Reason, pb.REASON_WRONG_CALL_KIND)
UNKNOWN_SESSION = wire(pb.Reason, pb.REASON_UNKNOWN_SESSION)
UNAUTHENTICATED = wire(pb.Reason, pb.REASON_UNAUTHENTICATED)
MESSAGE_TOO_LARGE = wire(pb.Reason, pb.REASON_MESSAGE_TOO_LARGE)
UNAVAILABLE = wire(pb.Reason, pb.REASON_UNAVAILABLE)
INTERNAL = wire(pb.Reason, pb.REASON_INTERNAL)


# Why the host cancels a call (Cancel.reason); the worker's own deadline timer says the same.
CANCELLED = wire(pb.CancelReason, pb.CANCEL_REASON_CANCELLED)
DEADLINE_EXCEEDED = wire(pb.CancelReason, pb.CANCEL_REASON_DEADLINE_EXCEEDED)


def go_error_kind(value: int) -> str:
    """The wire string of a GoErrorKind (GoError.kind)."""
    return wire(pb.GoErrorKind, value)
