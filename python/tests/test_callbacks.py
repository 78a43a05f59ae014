"""Tools calling Go: ctx.call_go over the channel, answered here by a fake host."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from conftest import args, pb, tools_with, wait_for

from pyvisor_worker import GoError, ToolContext
from pyvisor_worker.cli import parse


class Host:
    """The host side of a channel that also answers callbacks: ``answer(name, args)``
    returns a result or raises GoError; ``hold`` names callbacks left unanswered."""

    def __init__(self, stub: Any, answer: Any = None, hold: frozenset[str] = frozenset()) -> None:
        self.call = stub.Channel()
        self.answer = answer
        self.hold = hold
        self.got: dict[int, list[Any]] = {}
        self.callbacks: list[Any] = []
        self.withdrawn: list[int] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.call:
            which = frame.WhichOneof("body")
            if which == "callback":
                self.callbacks.append(frame)
                if frame.callback.name not in self.hold:
                    await self.call.write(self._reply(frame))
            elif which == "callback_cancel":
                self.withdrawn.append(frame.callback_cancel.callback_id)
            else:
                self.got.setdefault(frame.call_id, []).append(frame)
            self._arrived.set()

    def _reply(self, frame: Any) -> Any:
        cb = frame.callback
        reply = pb.CallbackReply(callback_id=cb.callback_id)
        try:
            reply.json = json.dumps(self.answer(cb.name, json.loads(cb.arguments))).encode()
        except GoError as exc:
            reply.error.CopyFrom(pb.GoError(kind=exc.kind, message=exc.message, callback=cb.name))
        return pb.HostFrame(call_id=frame.call_id, callback_reply=reply)

    async def send(self, call_id: int, tool: str, timeout_micros: int = 0, **kwargs: Any) -> None:
        request = pb.ExecuteRequest(tool=tool, arguments=args(**kwargs),
                                    correlation_id=f"cid-{call_id}")
        await self.call.write(pb.HostFrame(call_id=call_id, call=pb.Call(
            request=request, timeout_micros=timeout_micros)))

    async def cancel(self, call_id: int) -> None:
        await self.call.write(pb.HostFrame(call_id=call_id, cancel=pb.Cancel(reason="cancelled")))

    async def until(self, predicate: Any, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._arrived.clear()
                await self._arrived.wait()

    async def ended(self, call_id: int) -> Any:
        await self.until(lambda: bool(self.got.get(call_id)))
        return self.got[call_id][-1]

    async def close(self) -> None:
        await self.call.done_writing()
        await self._reader


def lookup(name: str, kwargs: dict[str, Any]) -> Any:
    if name == "lookup_user":
        if kwargs["id"] == 1:
            return {"name": "Ada"}
        raise GoError(GoError.ERROR, f"no user {kwargs['id']}")
    raise GoError(GoError.UNKNOWN_CALLBACK, name)


async def greet_async(user_id: int, ctx: ToolContext) -> str:
    return (await ctx.call_go("lookup_user", id=user_id))["name"]


def greet_sync(user_id: int, ctx: ToolContext) -> str:
    assert threading.current_thread() is not threading.main_thread()
    return str(ctx.call_go("lookup_user", id=user_id)["name"])


async def guarded(ctx: ToolContext, name: str, kwargs: dict[str, Any]) -> Any:
    try:
        return await ctx.call_go(name, **kwargs)
    except GoError as exc:
        return {"kind": exc.kind, "message": exc.message, "callback": exc.callback}


def guarded_sync(ctx: ToolContext, name: str) -> Any:
    try:
        return ctx.call_go(name)
    except GoError as exc:
        return {"kind": exc.kind, "message": exc.message}


async def set_argument(ctx: ToolContext) -> Any:
    return await guarded(ctx, "lookup_user", {"id": {1, 2}})


late_saw: list[str] = []


def late_call(seconds: float, ctx: ToolContext) -> None:
    ctx.wait_cancelled(seconds)  # a sync tool that goes on after its cancellation
    try:
        ctx.call_go("lookup_user", id=1)
    except GoError as exc:
        late_saw.append(exc.kind)


TOOLS = tools_with(greet_async, greet_sync, guarded, guarded_sync, set_argument, late_call)
CALLBACKS = ("lookup_user", "slow")


@pytest.fixture
async def host(start_worker: Any) -> Any:
    async def open_(answer: Any = lookup, **kwargs: Any) -> Host:
        kwargs.setdefault("callbacks", CALLBACKS)
        w = await start_worker(TOOLS, **kwargs)
        return Host(w.stub, answer, hold=frozenset({"slow"}))
    return open_


@pytest.mark.parametrize("tool", ["greet_async", "greet_sync"])
async def test_a_tool_uses_the_result_of_the_callback_it_made(host: Any, tool: str) -> None:
    h = await host()
    await h.send(7, tool, timeout_micros=5_000_000, user_id=1)
    assert (await h.ended(7)).result.json == b'"Ada"'
    [frame] = h.callbacks
    assert frame.call_id == 7, "a callback names the call that made it"
    assert frame.callback.name == "lookup_user"
    assert json.loads(frame.callback.arguments) == {"id": 1}
    assert 0 < frame.callback.timeout_micros <= 5_000_000, "no more than the call's time left"
    await h.close()


async def test_a_go_error_is_a_go_error_with_its_kind_and_one_let_through_is_the_tools_error(
    host: Any,
) -> None:
    h = await host()
    await h.send(1, "guarded", name="lookup_user", kwargs={"id": 2})
    assert json.loads((await h.ended(1)).result.json) == {
        "kind": "error", "message": "no user 2", "callback": "lookup_user"}
    await h.send(2, "greet_async", user_id=2)
    error = (await h.ended(2)).tool_error
    assert error.type == "pyvisor_worker.GoError"
    assert error.message == "go callback 'lookup_user' failed (error): no user 2"
    await h.close()


async def test_an_unknown_name_or_arguments_that_are_not_json_fail_at_once_without_a_frame(
    host: Any,
) -> None:
    h = await host()
    await h.send(1, "guarded", name="nope", kwargs={})
    assert json.loads((await h.ended(1)).result.json) == {
        "kind": "unknown_callback", "callback": "nope",
        "message": "no Go callback 'nope' (registered: lookup_user, slow)"}
    await h.send(2, "set_argument")
    out = json.loads((await h.ended(2)).result.json)
    assert (out["kind"], out["message"]) == (
        "invalid_argument", "arguments are not JSON-encodable: Object of type set is not JSON serializable")
    assert h.callbacks == [], "nothing reached the host"
    await h.close()


@pytest.mark.parametrize("tool", ["guarded", "guarded_sync"])
async def test_cancelling_the_call_withdraws_its_callback_and_the_host_hears(
    host: Any, tool: str
) -> None:
    h = await host()
    kwargs: dict[str, Any] = {"kwargs": {}} if tool == "guarded" else {}
    await h.send(1, tool, name="slow", **kwargs)
    await h.until(lambda: len(h.callbacks) == 1)
    await h.cancel(1)
    assert (await h.ended(1)).WhichOneof("body") == "body_ended"
    await h.until(lambda: h.withdrawn == [h.callbacks[0].callback.callback_id])
    await h.close()


async def test_the_calls_deadline_withdraws_its_callback(host: Any) -> None:
    h = await host()
    await h.send(1, "guarded_sync", timeout_micros=200_000, name="slow")
    assert (await h.ended(1)).WhichOneof("body") == "body_ended"
    await h.until(lambda: len(h.withdrawn) == 1)
    await h.close()


async def test_a_call_on_the_unary_rpc_cannot_call_go(start_worker: Any) -> None:
    w = await start_worker(TOOLS, callbacks=CALLBACKS)
    resp = await w.stub.Execute(pb.ExecuteRequest(
        tool="guarded", arguments=args(name="lookup_user", kwargs={"id": 1})))
    out = json.loads(resp.result.json)
    assert out["kind"] == "unavailable"
    assert "this call did not come on it" in out["message"]


async def test_describe_lists_the_callbacks_the_host_serves(start_worker: Any) -> None:
    w = await start_worker(TOOLS, callbacks=("b", "a"))
    resp = await w.stub.Describe(pb.DescribeRequest())
    assert [c.name for c in resp.callbacks] == ["a", "b"]


def test_the_callbacks_come_from_the_environment_as_a_json_array() -> None:
    config = parse(["--tools", "m", "--socket", "/tmp/x.sock"],
                   {"PYVISOR_CALLBACKS": '["lookup_user", "ping"]'})
    assert config.callbacks == ("lookup_user", "ping")
    with pytest.raises(SystemExit) as exit_:
        parse(["--tools", "m", "--socket", "/tmp/x.sock"], {"PYVISOR_CALLBACKS": "lookup_user"})
    assert exit_.value.code == 2


cleanup_saw: list[Any] = []


def gen_cleanup(ctx: ToolContext) -> Any:
    try:
        yield 1
        ctx.wait_cancelled(5)
        yield 2
    finally:
        try:
            cleanup_saw.append(ctx.call_go("lookup_user", id=1))
        except GoError as exc:
            cleanup_saw.append(exc)


async def test_a_sync_generators_cleanup_runs_in_a_thread_and_its_call_go_fails_cleanly(
    start_worker: Any,
) -> None:
    w = await start_worker(tools_with(gen_cleanup), callbacks=CALLBACKS)
    h = Host(w.stub, lookup)
    request = pb.ExecuteRequest(tool="gen_cleanup", arguments=args(), correlation_id="c1")
    await h.call.write(pb.HostFrame(call_id=1, call=pb.Call(request=request, stream=True, credit=8)))
    await h.until(lambda: len(h.got.get(1, [])) >= 1)
    await h.cancel(1)
    await h.until(lambda: any(f.WhichOneof("body") != "chunk" for f in h.got.get(1, [])))
    await wait_for(lambda: bool(cleanup_saw))
    [outcome] = cleanup_saw
    assert isinstance(outcome, GoError), f"cleanup's call_go returned {outcome!r}"
    assert outcome.kind in {GoError.CANCELLED, GoError.UNAVAILABLE}
    await h.close()


async def test_call_go_after_the_call_was_cancelled_is_cancelled(host: Any) -> None:
    h = await host()
    await h.send(1, "late_call", seconds=0.3)
    await asyncio.sleep(0.05)
    await h.cancel(1)
    assert (await h.ended(1)).WhichOneof("body") == "body_ended"
    await wait_for(lambda: bool(late_saw))
    assert late_saw == [GoError.CANCELLED]
