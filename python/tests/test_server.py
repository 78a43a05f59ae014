"""In-process worker tests over a Unix socket (and TCP), with a grpc.aio client."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from conftest import args, tools_with, wait_for
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pyvisor_worker import ToolContext, __version__
from pyvisor_worker._proto import worker_pb2 as pb
from pyvisor_worker.context import correlation_id_var


def reason(err: grpc.aio.AioRpcError) -> str | None:
    for key, value in err.trailing_metadata() or ():
        if key == "pyvisor-error":
            return str(value)
    return None


async def execute(stub: Any, tool: str, **kwargs: Any) -> Any:
    return await stub.Execute(pb.ExecuteRequest(tool=tool, arguments=args(**kwargs)))


async def test_describe(start_worker: Any) -> None:
    w = await start_worker(worker_id="w-7")
    d = await w.stub.Describe(pb.DescribeRequest())
    assert d.pid == os.getpid()
    assert d.protocol_version == 1 and d.package_version == __version__
    assert d.worker_id == "w-7" and d.python_version
    names = [t.name for t in d.tools]
    assert names == sorted(names) and {"echo", "add", "raise", "count"} <= set(names)
    by_name = {t.name: t for t in d.tools}
    assert json.loads(by_name["add"].parameters_schema) == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    }
    assert by_name["add"].description == "Add two integers."
    assert by_name["count"].streaming and by_name["count"].is_async
    assert by_name["count_sync"].streaming and not by_name["count_sync"].is_async
    assert not by_name["echo"].streaming and by_name["echo"].is_async
    assert not by_name["echo_sync"].is_async


async def test_execute_returns_compact_json(start_worker: Any) -> None:
    w = await start_worker()
    r = await execute(w.stub, "add", a=2, b=40)
    assert r.WhichOneof("outcome") == "result" and r.result.json == b"42"
    r = await execute(w.stub, "echo_sync", value={"k": ["é", 1, None]})
    assert r.result.json == '{"k":["é",1,null]}'.encode()
    r = await w.stub.Execute(pb.ExecuteRequest(tool="whoami"))  # empty arguments mean {}
    assert json.loads(r.result.json)["pid"] == os.getpid()


async def test_bytes_result_is_a_payload(start_worker: Any) -> None:
    w = await start_worker()
    r = await execute(w.stub, "large", size=1000)
    assert r.result.json == b"null" and r.result.payload == b"x" * 1000
    r = await w.stub.Execute(pb.ExecuteRequest(tool="payload_size", payload=b"abc"))
    assert r.result.json == b"3"


class CustomError(Exception):
    pass


async def test_tool_exception_is_a_tool_error(start_worker: Any, json_logs: Any) -> None:
    def custom() -> None:
        raise CustomError("custom failure")

    w = await start_worker(tools_with(custom))
    r = await w.stub.Execute(pb.ExecuteRequest(
        tool="raise", arguments=args(message="bad thing", type="KeyError"), correlation_id="c-1"))
    assert r.WhichOneof("outcome") == "error"
    e = r.error
    assert (e.tool, e.type, e.message, e.correlation_id) == ("raise", "KeyError", "'bad thing'", "c-1")
    assert e.traceback.startswith("Traceback (most recent call last):")
    assert "in fail" in e.traceback and e.traceback.rstrip().endswith("KeyError: 'bad thing'")
    r = await execute(w.stub, "custom")
    assert r.error.type == f"{__name__}.CustomError" and r.error.message == "custom failure"
    # the worker keeps serving, and logged the error with its exception and correlation id
    assert (await execute(w.stub, "add", a=1, b=1)).result.json == b"2"
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    errors = [x for x in lines if x["level"] == "error" and x.get("tool") == "raise"]
    assert errors and errors[0]["correlation_id"] == "c-1" and "KeyError" in errors[0]["exception"]


async def test_unserializable_result_is_a_type_error(start_worker: Any) -> None:
    def bad() -> object:
        return object()

    w = await start_worker(tools_with(bad))
    r = await execute(w.stub, "bad")
    assert r.error.type == "TypeError" and "not JSON-serializable" in r.error.message


async def test_unknown_tool(start_worker: Any) -> None:
    w = await start_worker(tools_with())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await execute(w.stub, "nope")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert reason(info.value) == "unknown_tool"
    assert info.value.details().startswith("unknown tool 'nope' (registered: add, array_frames, array_info, call_go, ")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (args(a=1), "missing required argument 'b' for tool 'add'"),
        (args(a=1, b=2, c=3), "unknown argument 'c' for tool 'add' (sent: a, b, c; parameters: a, b)"),
        (args(a="x", b=2), "argument 'a' of tool 'add' must be integer, got string"),
        (b"[1, 2]", "arguments for tool 'add' must be a JSON object"),
        (b"{not json", "arguments for tool 'add' must be a JSON object"),
    ],
)
async def test_invalid_arguments(start_worker: Any, raw: bytes, message: str) -> None:
    w = await start_worker()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await w.stub.Execute(pb.ExecuteRequest(tool="add", arguments=raw))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(info.value) == "invalid_argument"
    assert info.value.details().startswith(message)


async def test_wrong_call_kind(start_worker: Any) -> None:
    w = await start_worker()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await execute(w.stub, "count", n=1)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(info.value) == "wrong_call_kind" and "Runtime.Stream" in info.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in w.stub.ExecuteStream(pb.ExecuteRequest(tool="add", arguments=args(a=1, b=2))):
            pass
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(info.value) == "wrong_call_kind" and "Runtime.Execute" in info.value.details()


@pytest.mark.parametrize("tool", ["count", "count_sync"])
async def test_stream_yields_every_chunk_in_order(start_worker: Any, tool: str, json_logs: Any) -> None:
    w = await start_worker()
    events = [m async for m in w.stub.ExecuteStream(pb.ExecuteRequest(tool=tool, arguments=args(n=5)))]
    assert [json.loads(m.chunk.json) for m in events[:-1]] == [{"i": i} for i in range(5)]
    assert events[-1].WhichOneof("event") == "done" and events[-1].done.chunks == 5
    closed = [json.loads(x) for x in json_logs.getvalue().splitlines() if "count stream closed" in x]
    assert closed and closed[0]["chunks_sent"] == 5 and closed[0]["n"] == 5


async def test_stream_error_ends_the_stream(start_worker: Any) -> None:
    async def flaky() -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("mid-stream")

    def flaky_sync() -> Iterator[int]:
        yield 1
        raise RuntimeError("mid-stream")

    w = await start_worker(tools_with(flaky, flaky_sync))
    for name in ("flaky", "flaky_sync"):
        events = [m async for m in w.stub.ExecuteStream(pb.ExecuteRequest(tool=name))]
        assert [m.WhichOneof("event") for m in events] == ["chunk", "error"]
        assert events[1].error.type == "RuntimeError" and events[1].error.message == "mid-stream"
        assert "Traceback" in events[1].error.traceback


async def test_stream_bytes_chunks(start_worker: Any) -> None:
    async def blobs() -> AsyncIterator[bytes]:
        yield b"\x00\x01"

    w = await start_worker(tools_with(blobs))
    events = [m async for m in w.stub.ExecuteStream(pb.ExecuteRequest(tool="blobs"))]
    assert events[0].chunk.json == b"null" and events[0].chunk.payload == b"\x00\x01"


async def test_cancel_raises_cancelled_error_inside_async_tool(start_worker: Any) -> None:
    started = asyncio.Event()
    observed = asyncio.Event()

    async def waiter() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            observed.set()
            raise

    w = await start_worker(tools_with(waiter))
    call = w.stub.Execute(pb.ExecuteRequest(tool="waiter"))
    await asyncio.wait_for(started.wait(), 5)
    call.cancel()
    await asyncio.wait_for(observed.wait(), 5)
    await wait_for(lambda: w.worker.servicer.in_flight == 0)
    assert (await execute(w.stub, "add", a=1, b=2)).result.json == b"3"


async def test_cancel_closes_async_generator(start_worker: Any) -> None:
    closed = asyncio.Event()

    async def forever() -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    w = await start_worker(tools_with(forever))
    call = w.stub.ExecuteStream(pb.ExecuteRequest(tool="forever"))
    first = await call.read()
    assert first.chunk.json == b"0"
    call.cancel()
    await asyncio.wait_for(closed.wait(), 5)


async def test_cancel_closes_sync_generator(start_worker: Any) -> None:
    closed = threading.Event()
    steps = threading.Event()

    def forever_sync(ctx: ToolContext) -> Iterator[int]:
        try:
            i = 0
            while not ctx.cancelled:
                yield i
                steps.set()
                i += 1
                time.sleep(0.005)
        finally:
            closed.set()

    w = await start_worker(tools_with(forever_sync))
    call = w.stub.ExecuteStream(pb.ExecuteRequest(tool="forever_sync"))
    assert (await call.read()).chunk.json == b"0"
    call.cancel()
    await wait_for(closed.is_set)


async def test_deadline_cancels_the_tool_and_worker_keeps_serving(
    start_worker: Any, json_logs: Any
) -> None:
    w = await start_worker()
    t0 = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await w.stub.Execute(pb.ExecuteRequest(tool="sleep", arguments=args(seconds=30)),
                             timeout=0.3)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 2
    await wait_for(lambda: "sleep cancelled" in json_logs.getvalue())
    assert (await execute(w.stub, "add", a=1, b=2)).result.json == b"3"


async def test_deadline_sets_the_sync_tool_cancellation_flag(start_worker: Any) -> None:
    seen: list[bool] = []

    def blocking(ctx: ToolContext) -> None:
        seen.append(ctx.wait_cancelled(10))

    w = await start_worker(tools_with(blocking))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await w.stub.Execute(pb.ExecuteRequest(tool="blocking"), timeout=0.2)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await wait_for(lambda: seen == [True])


async def test_sessions(start_worker: Any) -> None:
    w = await start_worker()
    opened = await w.stub.OpenSession(pb.OpenSessionRequest())
    assert re.fullmatch(r"sess-[0-9a-f]{16}", opened.session_id)
    sid = (await w.stub.OpenSession(pb.OpenSessionRequest(session_id="s1"))).session_id
    assert sid == "s1"

    async def call(tool: str, session: str, **kw: Any) -> Any:
        return await w.stub.Execute(
            pb.ExecuteRequest(tool=tool, arguments=args(**kw), session_id=session))

    assert (await call("session_set", "s1", key="k", value=[1, 2])).WhichOneof("outcome") == "result"
    # opening an existing id is idempotent: the state survives
    await w.stub.OpenSession(pb.OpenSessionRequest(session_id="s1"))
    assert (await call("session_get", "s1", key="k")).result.json == b"[1,2]"
    missing = await call("session_get", opened.session_id, key="k")
    assert missing.error.type == "KeyError"
    assert (await w.stub.CloseSession(pb.CloseSessionRequest(session_id="s1"))).existed
    assert not (await w.stub.CloseSession(pb.CloseSessionRequest(session_id="s1"))).existed
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call("session_get", "s1", key="k")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert reason(info.value) == "unknown_session"


async def test_heartbeat_counts_calls_in_flight(start_worker: Any) -> None:
    w = await start_worker()
    hb = await w.stub.Heartbeat(pb.HeartbeatRequest(sequence=7))
    assert hb.sequence == 7 and hb.in_flight == 0 and hb.pid == os.getpid()
    assert abs(hb.worker_unix_nano - time.time_ns()) < 5e9
    call = w.stub.Execute(pb.ExecuteRequest(tool="wait_sync", arguments=args(seconds=10)))
    stream = w.stub.ExecuteStream(pb.ExecuteRequest(tool="count", arguments=args(n=3, interval=10)))
    await stream.read()
    await wait_for(lambda: w.worker.servicer.in_flight == 2)
    hb = await w.stub.Heartbeat(pb.HeartbeatRequest(sequence=8))
    assert hb.in_flight == 2
    call.cancel()
    stream.cancel()
    await wait_for(lambda: w.worker.servicer.in_flight == 0)


async def test_oversize_request_and_result_are_resource_exhausted(start_worker: Any) -> None:
    limit = 64 * 1024
    w = await start_worker(max_message_bytes=limit)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await w.stub.Execute(pb.ExecuteRequest(tool="payload_size", payload=b"x" * (limit + 1)))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await execute(w.stub, "add", a=1, b=2)).result.json == b"3"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await execute(w.stub, "large", size=limit + 1)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await execute(w.stub, "large", size=100)).result.payload == b"x" * 100


async def test_tcp_requires_the_token(start_worker: Any) -> None:
    w = await start_worker(token="s3cret")
    assert re.fullmatch(r"127\.0\.0\.1:\d+", w.address)
    health = health_pb2_grpc.HealthStub(w.channel)
    for metadata in [(), (("authorization", "Bearer wrong"),), (("authorization", "s3cret"),)]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await w.stub.Describe(pb.DescribeRequest(), metadata=metadata)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert reason(info.value) == "unauthenticated"
        assert "s3cret" not in info.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await health.Check(health_pb2.HealthCheckRequest())
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    good = (("authorization", "Bearer s3cret"),)
    assert (await w.stub.Describe(pb.DescribeRequest(), metadata=good)).pid == os.getpid()
    checked = await health.Check(health_pb2.HealthCheckRequest(), metadata=good)
    assert checked.status == health_pb2.HealthCheckResponse.SERVING
    stream = w.stub.ExecuteStream(pb.ExecuteRequest(tool="count", arguments=args(n=2)),
                                  metadata=good)
    assert len([m async for m in stream]) == 3


async def test_health_serving(start_worker: Any) -> None:
    w = await start_worker()
    health = health_pb2_grpc.HealthStub(w.channel)
    for service in ("", "pyvisor.worker.v1.WorkerService"):
        r = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert r.status == health_pb2.HealthCheckResponse.SERVING


async def test_correlation_id_reaches_context_and_logs(start_worker: Any, json_logs: Any) -> None:
    w = await start_worker()
    md = (("x-correlation-id", "corr-md"),)
    r = await w.stub.Execute(pb.ExecuteRequest(tool="whoami", metadata={"k": "v"}), metadata=md)
    who = json.loads(r.result.json)
    assert who["correlation_id"] == "corr-md" and who["metadata"] == {"k": "v"}
    assert who["session_id"] is None
    await w.stub.Execute(pb.ExecuteRequest(tool="log", arguments=args(message="hi there")),
                         metadata=md)
    line = next(json.loads(x) for x in json_logs.getvalue().splitlines() if "hi there" in x)
    assert line["correlation_id"] == "corr-md" and line["logger"] == "pyvisor_worker.examples"
    # the request field wins over metadata
    r = await w.stub.Execute(pb.ExecuteRequest(tool="whoami", correlation_id="corr-req"),
                             metadata=md)
    assert json.loads(r.result.json)["correlation_id"] == "corr-req"


async def test_sync_tools_keep_contextvars(start_worker: Any) -> None:
    def current() -> list[str]:
        return [correlation_id_var.get(), threading.current_thread().name]

    def gen_current() -> Iterator[str]:
        yield correlation_id_var.get()
        yield correlation_id_var.get()

    w = await start_worker(tools_with(current, gen_current))
    r = await w.stub.Execute(pb.ExecuteRequest(tool="current", correlation_id="ctx-1"))
    cid, thread = json.loads(r.result.json)
    assert cid == "ctx-1" and thread.startswith("pyvisor-tool")
    events = [m async for m in w.stub.ExecuteStream(
        pb.ExecuteRequest(tool="gen_current", correlation_id="ctx-2"))]
    assert [json.loads(m.chunk.json) for m in events[:2]] == ["ctx-2", "ctx-2"]


async def test_shutdown_rpc_drains_then_stops(start_worker: Any) -> None:
    w = await start_worker()
    call = w.stub.Execute(pb.ExecuteRequest(tool="sleep", arguments=args(seconds=0.3)))
    await wait_for(lambda: w.worker.servicer.in_flight == 1)
    r = await w.stub.Shutdown(pb.ShutdownRequest(grace_millis=5000))
    assert r.in_flight == 1
    assert (await call).result.json == b"0.3"
    await asyncio.wait_for(w.worker.wait_stopped(), 5)
    assert not os.path.exists(w.address)


async def test_stop_cancels_calls_past_the_grace(start_worker: Any, json_logs: Any) -> None:
    w = await start_worker()
    call = w.stub.Execute(pb.ExecuteRequest(tool="sleep", arguments=args(seconds=30)))
    await wait_for(lambda: w.worker.servicer.in_flight == 1)
    await asyncio.wait_for(w.worker.stop(0.1), 5)
    with pytest.raises(grpc.aio.AioRpcError):
        await call
    await wait_for(lambda: "sleep cancelled" in json_logs.getvalue())
