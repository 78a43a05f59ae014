"""The wire strings come from worker.proto's (wire) options, as Go reads them too."""

from __future__ import annotations

from pyvisor_worker import wire
from pyvisor_worker._proto import worker_pb2 as pb
from pyvisor_worker.gocall import GoError


def test_every_value_but_unspecified_has_a_wire_string() -> None:
    for enum in (pb.Reason, pb.GoErrorKind, pb.MetadataKey, pb.CancelReason):
        for name, number in enum.items():
            assert (number == 0) == (wire.wire(enum, number) == ""), name


def test_the_strings_the_worker_sends_are_the_protos() -> None:
    assert wire.ERROR_KEY == "pyvisor-error"
    assert wire.CORRELATION_ID_KEY == "x-correlation-id"
    assert wire.UNKNOWN_TOOL == "unknown_tool"
    assert GoError.PANIC == "panic"
    assert len(GoError.KINDS) == len(pb.GoErrorKind.values()) - 1
