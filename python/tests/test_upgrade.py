"""Session state across an upgrade: export from the old worker, import (through
@on_upgrade) into the new one."""

from __future__ import annotations

import types
from typing import Any

import grpc
import pytest

from pyvisor_worker import ToolContext, on_upgrade, tool
from pyvisor_worker._proto import worker_pb2 as pb
from pyvisor_worker.tools import discover


def module_with(hook: bool) -> Any:
    """A tools module whose session keeps a count, and, with hook, migrates it: v2 keeps
    the count under another key."""
    m = types.ModuleType("upgrade_test_tools")

    @tool
    def bump(ctx: ToolContext) -> int:
        ctx.session["count"] = ctx.session.get("count", 0) + 1
        return int(ctx.session["count"])

    bump.__module__ = m.__name__
    m.bump = bump  # type: ignore[attr-defined]
    if hook:
        @on_upgrade
        def migrate(state: dict[str, Any], old_version: str) -> dict[str, Any]:
            return {"total": state.get("count", 0), "from": old_version}

        migrate.__module__ = m.__name__
        m.migrate = migrate  # type: ignore[attr-defined]
    return m


async def test_a_session_moves_with_its_state_through_the_hook(start_worker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    old_module, new_module = module_with(hook=False), module_with(hook=True)
    monkeypatch.setitem(sys.modules, "upgrade_test_tools", old_module)
    old = await start_worker(tools=discover([old_module]))
    await old.stub.OpenSession(pb.OpenSessionRequest(session_id="s1"))
    for _ in range(3):
        await old.stub.Execute(pb.ExecuteRequest(tool="bump", session_id="s1"))

    exported = await old.stub.ExportSession(pb.ExportSessionRequest(session_id="s1"))
    assert exported.existed and exported.state and len(exported.code_version) == 12
    assert "s1" in old.worker.servicer.dispatcher.sessions, "the old worker keeps it, for a rollback"
    missing = await old.stub.ExportSession(pb.ExportSessionRequest(session_id="nope"))
    assert not missing.existed

    monkeypatch.setitem(sys.modules, "upgrade_test_tools", new_module)
    new = await start_worker(tools=discover([new_module]))
    imported = await new.stub.ImportSession(pb.ImportSessionRequest(
        session_id="s1", state=exported.state, from_version=exported.code_version))
    assert imported.migrated
    assert new.worker.servicer.dispatcher.sessions["s1"] == {"total": 3, "from": exported.code_version}


async def test_without_a_hook_the_state_moves_as_it_is(start_worker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    module = module_with(hook=False)
    monkeypatch.setitem(sys.modules, "upgrade_test_tools", module)
    w = await start_worker(tools=discover([module]))
    await w.stub.OpenSession(pb.OpenSessionRequest(session_id="s"))
    await w.stub.Execute(pb.ExecuteRequest(tool="bump", session_id="s"))
    exported = await w.stub.ExportSession(pb.ExportSessionRequest(session_id="s"))
    imported = await w.stub.ImportSession(pb.ImportSessionRequest(session_id="s", state=exported.state))
    assert not imported.migrated
    assert w.worker.servicer.dispatcher.sessions["s"] == {"count": 1}


async def test_state_that_cannot_be_pickled_stays_and_says_why(start_worker: Any) -> None:
    w = await start_worker()
    w.worker.servicer.dispatcher.sessions["s"] = {"lock": __import__("threading").Lock()}
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await w.stub.ExportSession(pb.ExportSessionRequest(session_id="s"))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "cannot be pickled" in (info.value.details() or "")
    assert "s" in w.worker.servicer.dispatcher.sessions, "the session stays with the old worker"
