"""The Channel RPC's frame loop: calls multiplexed on one stream, each ending in one frame."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from conftest import args, pb, tools_with, wait_for

from pyvisor_worker import ToolContext


class Frames:
    """A client side of the channel: send host frames, read worker frames by call id."""

    def __init__(self, stub: Any) -> None:
        self.call = stub.Channel()
        self.got: dict[int, list[Any]] = {}
        self.pongs: list[Any] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.call:
            if frame.WhichOneof("body") == "pong":
                self.pongs.append(frame.pong)
            else:
                self.got.setdefault(frame.call_id, []).append(frame)
            self._arrived.set()

    async def send(self, call_id: int, tool: str, *, stream: bool = False, credit: int = 0,
                   timeout_micros: int = 0, payload: bytes = b"", **kwargs: Any) -> None:
        request = pb.ExecuteRequest(tool=tool, arguments=args(**kwargs), payload=payload,
                                    correlation_id=f"cid-{call_id}")
        await self.call.write(pb.HostFrame(call_id=call_id, call=pb.Call(
            request=request, stream=stream, credit=credit, timeout_micros=timeout_micros)))

    async def ended(self, call_id: int, timeout: float = 5.0) -> Any:
        """The terminal frame of a call."""
        terminal = {"result", "end", "tool_error", "failed", "body_ended"}
        async with asyncio.timeout(timeout):
            while True:
                frames = self.got.get(call_id, [])
                if frames and frames[-1].WhichOneof("body") in terminal:
                    return frames[-1]
                self._arrived.clear()
                await self._arrived.wait()

    async def close(self) -> None:
        await self.call.done_writing()
        await self._reader


@pytest.fixture
async def frames(start_worker: Any) -> Any:
    async def open_(**kwargs: Any) -> Frames:
        w = await start_worker(**kwargs)
        return Frames(w.stub)
    return open_


async def test_calls_are_answered_by_call_id_in_the_order_they_end(frames: Any) -> None:
    f = await frames()
    await f.send(1, "sleep", seconds=0.3)
    await f.send(2, "sleep", seconds=0.0)
    await f.send(3, "add", a=2, b=3)
    second, third, first = await f.ended(2), await f.ended(3), await f.ended(1)
    assert third.result.json == b"5"
    assert second.result.json == b"0.0"
    assert first.result.json == b"0.3"
    assert [len(f.got[i]) for i in (1, 2, 3)] == [1, 1, 1], "one terminal frame per call"
    await f.close()


async def test_a_refused_call_fails_with_its_code_and_reason_and_the_channel_serves_on(
    frames: Any,
) -> None:
    f = await frames()
    await f.send(1, "nope")
    failed = (await f.ended(1)).failed
    assert (failed.code, failed.reason) == (5, "unknown_tool")  # NOT_FOUND
    assert "registered:" in failed.message
    await f.send(2, "add", a="x", b=1)
    assert (await f.ended(2)).failed.reason == "invalid_argument"
    await f.send(3, "count", n=2)
    assert (await f.ended(3)).failed.reason == "wrong_call_kind"
    await f.send(4, "add", a=1, b=1)
    assert (await f.ended(4)).result.json == b"2"
    await f.close()


async def test_a_tool_exception_of_any_kind_is_a_tool_error(start_worker: Any) -> None:
    async def raises_cancelled() -> None:
        raise asyncio.CancelledError("the tool's own")

    def raises_interrupt() -> None:
        raise KeyboardInterrupt("in a thread")

    async def raises_base() -> None:
        raise BaseException("base")  # noqa: TRY002 - the point of the test

    w = await start_worker(tools=tools_with(raises_cancelled, raises_interrupt, raises_base))
    f = Frames(w.stub)
    for i, name in enumerate(["raises_cancelled", "raises_interrupt", "raises_base", "raise"], 1):
        await f.send(i, name)
        frame = await f.ended(i)
        assert frame.WhichOneof("body") == "tool_error", name
    assert f.got[1][-1].tool_error.type == "asyncio.exceptions.CancelledError"
    assert f.got[2][-1].tool_error.type == "KeyboardInterrupt"
    await f.send(9, "add", a=1, b=2)
    assert (await f.ended(9)).result.json == b"3"
    await f.close()


async def test_a_cancel_frame_reaches_the_body_and_is_answered_once_it_has_ended(
    start_worker: Any,
) -> None:
    seen: list[str] = []
    released = threading.Event()

    async def waits() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.append("async cancelled")
            raise

    def waits_sync(ctx: ToolContext) -> None:
        ctx.wait_cancelled(60)
        seen.append("sync cancelled")
        released.wait(5)

    w = await start_worker(tools=tools_with(waits, waits_sync))
    f = Frames(w.stub)
    await f.send(1, "waits")
    await f.send(2, "waits_sync")
    await wait_for(lambda: w.worker.servicer.in_flight == 2)
    await f.call.write(pb.HostFrame(call_id=1, cancel=pb.Cancel(reason="cancelled")))
    assert (await f.ended(1)).body_ended.cancelled
    await f.call.write(pb.HostFrame(call_id=2, cancel=pb.Cancel(reason="cancelled")))
    await wait_for(lambda: "sync cancelled" in seen)
    await asyncio.sleep(0.1)
    assert 2 not in f.got, "a sync body still running is not over"
    released.set()
    assert (await f.ended(2)).body_ended.cancelled
    assert seen == ["async cancelled", "sync cancelled"]
    await f.close()


async def test_the_deadline_in_the_call_frame_cancels_the_body(frames: Any) -> None:
    f = await frames()
    await f.send(1, "sleep", seconds=30, timeout_micros=50_000)
    assert (await f.ended(1, timeout=2)).body_ended.cancelled
    await f.close()


async def test_a_ping_is_answered_with_the_bodies_running(start_worker: Any) -> None:
    w = await start_worker()
    f = Frames(w.stub)
    await f.send(1, "sleep", seconds=0.5)
    await wait_for(lambda: w.worker.servicer.in_flight == 1)
    await f.call.write(pb.HostFrame(ping=pb.HeartbeatRequest(sequence=7)))
    await wait_for(lambda: len(f.pongs) == 1)
    assert (f.pongs[0].sequence, f.pongs[0].in_flight) == (7, 1)
    await f.ended(1)
    await f.close()


async def test_a_stream_sends_chunks_only_while_it_has_credit(frames: Any) -> None:
    f = await frames()
    await f.send(1, "count", stream=True, credit=2, n=5)
    await wait_for(lambda: len(f.got.get(1, [])) == 2)
    await asyncio.sleep(0.1)
    assert len(f.got[1]) == 2, "no third chunk without credit"
    await f.call.write(pb.HostFrame(call_id=1, credit=pb.Credit(chunks=10)))
    end = await f.ended(1)
    assert end.end.chunks == 5
    assert [fr.chunk.json for fr in f.got[1][:5]] == [
        b'{"i":0}', b'{"i":1}', b'{"i":2}', b'{"i":3}', b'{"i":4}'
    ]
    await f.close()


async def test_an_oversize_result_fails_only_its_own_call(frames: Any) -> None:
    limit = 64 * 1024
    f = await frames(max_message_bytes=limit)
    await f.send(1, "large", size=limit + 1)
    failed = (await f.ended(1)).failed
    assert (failed.code, failed.reason) == (8, "message_too_large")  # RESOURCE_EXHAUSTED
    await f.send(2, "payload_size", payload=b"x" * (limit + 1))
    assert (await f.ended(2)).failed.reason == "message_too_large"
    await f.send(3, "large", size=limit)
    assert len((await f.ended(3)).result.payload) == limit
    await f.close()


async def test_closing_the_host_side_lets_running_calls_finish(frames: Any) -> None:
    f = await frames()
    await f.send(1, "sleep", seconds=0.2)
    await f.close()
    assert f.got[1][-1].result.json == b"0.2"


@pytest.mark.parametrize("kind", ["CancelledError", "KeyboardInterrupt", "SystemExit",
                                  "GeneratorExit", "UserBaseError"])
@pytest.mark.parametrize("tool", ["raise_base", "raise_base_async"])
async def test_a_base_exception_the_tool_raises_is_its_tool_error(
    frames: Any, tool: str, kind: str
) -> None:
    f = await frames()
    await f.send(1, tool, type=kind)
    frame = await f.ended(1)
    assert frame.WhichOneof("body") == "tool_error"
    assert frame.tool_error.message == f"raised by the tool: {kind}"
    await f.send(2, "add", a=1, b=2)
    assert (await f.ended(2)).result.json == b"3"
    await f.close()


async def test_arguments_nested_too_deeply_or_holding_nan_are_refused_as_invalid(
    frames: Any,
) -> None:
    f = await frames()
    deep = b'{"value":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for i, raw in enumerate([deep, b'{"value": NaN}', b'{"value": -Infinity}'], 1):
        await f.call.write(pb.HostFrame(call_id=i, call=pb.Call(
            request=pb.ExecuteRequest(tool="echo", arguments=raw))))
        failed = (await f.ended(i)).failed
        assert (failed.code, failed.reason) == (3, "invalid_argument"), failed  # INVALID_ARGUMENT
    assert "nested too deeply" in f.got[1][-1].failed.message
    assert "NaN" in f.got[2][-1].failed.message
    await f.send(9, "add", a=1, b=2)
    assert (await f.ended(9)).result.json == b"3"
    await f.close()


async def test_a_call_the_worker_cancels_at_shutdown_is_refused_not_timed_out(
    start_worker: Any,
) -> None:
    w = await start_worker()
    f = Frames(w.stub)
    await f.send(1, "sleep", seconds=30)
    await wait_for(lambda: w.worker.servicer.in_flight == 1)
    await w.worker.servicer.drain_channels(0.05)
    failed = (await f.ended(1)).failed
    assert (failed.code, failed.reason) == (14, "unavailable")  # UNAVAILABLE
    assert "shutdown" in failed.message


async def test_an_exception_whose_str_raises_is_still_a_tool_error(start_worker: Any) -> None:
    class Hostile(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

        def __repr__(self) -> str:
            raise RuntimeError("no repr either")

    def raises_hostile() -> None:
        raise Hostile

    w = await start_worker(tools=tools_with(raises_hostile))
    f = Frames(w.stub)
    await f.send(1, "raises_hostile")
    frame = await f.ended(1)
    assert frame.WhichOneof("body") == "tool_error"
    assert frame.tool_error.type.endswith("Hostile")
    assert "__str__ raised RuntimeError" in frame.tool_error.message
    await f.send(2, "add", a=1, b=2)
    assert (await f.ended(2)).result.json == b"3"
    await f.close()


async def test_a_huge_exception_message_is_cut_not_the_channel(start_worker: Any) -> None:
    def raises_huge() -> None:
        raise ValueError("x" * (8 << 20))

    w = await start_worker(tools=tools_with(raises_huge), max_message_bytes=1 << 20)
    f = Frames(w.stub)
    await f.send(1, "raises_huge")
    error = (await f.ended(1)).tool_error
    assert error.type == "ValueError"
    assert len(error.message) < 70_000 and "[cut:" in error.message
    assert len(error.traceback) < 300_000 and "[cut:" in error.traceback
    await f.send(2, "add", a=1, b=2)
    assert (await f.ended(2)).result.json == b"3", "the channel serves on"
    await f.close()
