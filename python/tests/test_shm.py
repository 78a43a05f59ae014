"""Shared memory: payloads read in place from the input arena, results placed in the output
arena (copied once, or built there with ctx.buffer), released by the host, bounded."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from conftest import Arenas, args, pb, tools_with, wait_for
from test_channel import Frames

from pyvisor_worker import ToolContext
from pyvisor_worker.shm import ALIGN, OutputArena, address

PAGE = ALIGN


async def shm_worker(start_worker: Any, arenas: Arenas, threshold: int = PAGE,
                     tools: Any = None, **kwargs: Any) -> tuple[Any, Frames]:
    w = await start_worker(tools=tools, shm_threshold=threshold, **arenas.worker_fds(), **kwargs)
    return w, Frames(w.stub)


async def send_ref(f: Frames, call_id: int, tool: str, offset: int, length: int,
                   **kwargs: Any) -> None:
    request = pb.ExecuteRequest(tool=tool, arguments=args(**kwargs), correlation_id="c",
                                payload_ref=pb.SharedRef(offset=offset, length=length))
    await f.call.write(pb.HostFrame(call_id=call_id, call=pb.Call(request=request)))


def shared_of(w: Any) -> Any:
    return w.worker.servicer.dispatcher.shared


async def test_a_payload_in_the_input_arena_is_read_in_place_read_only(
    start_worker: Any, arenas: Any,
) -> None:
    a = arenas()
    data = os.urandom(3 * PAGE + 5)
    a.input[PAGE:PAGE + len(data)] = data
    _, f = await shm_worker(start_worker, a)
    await send_ref(f, 1, "payload_info", PAGE, len(data))
    info = (await f.ended(1)).result.json
    assert info == (b'{"size":%d,"type":"memoryview","readonly":true,"shared":true}' % len(data))
    await f.close()


async def test_numpy_reads_the_payload_without_a_copy(start_worker: Any, arenas: Any) -> None:
    np = pytest.importorskip("numpy")
    seen: dict[str, Any] = {}

    def total(ctx: ToolContext) -> float:
        arr = np.frombuffer(ctx.payload, dtype=np.float32)
        seen["address"], seen["owns"] = arr.ctypes.data, arr.flags.owndata
        return float(arr.sum())

    a = arenas()
    values = np.arange(4096, dtype=np.float32)
    a.input[2 * PAGE:2 * PAGE + values.nbytes] = values.tobytes()
    w, f = await shm_worker(start_worker, a, tools=tools_with(total))
    await send_ref(f, 1, "total", 2 * PAGE, values.nbytes)
    assert float((await f.ended(1)).result.json) == float(values.sum())
    base = shared_of(w).input_base
    assert seen["address"] == base + 2 * PAGE, "the array's data is the mapping's own page"
    assert not seen["owns"]
    await f.close()


async def test_a_ref_outside_the_input_arena_is_refused(start_worker: Any, arenas: Any) -> None:
    a = arenas(in_size=4 * PAGE)
    _, f = await shm_worker(start_worker, a)
    await send_ref(f, 1, "payload_size", 3 * PAGE, 2 * PAGE)
    await send_ref(f, 2, "payload_size", 2**63, 1)
    for call_id in (1, 2):
        failed = (await f.ended(call_id)).failed
        assert failed.reason == "invalid_argument" and "outside the input arena" in failed.message
    await send_ref(f, 3, "payload_size", 0, 4 * PAGE)
    assert (await f.ended(3)).result.json == b"%d" % (4 * PAGE)
    await f.close()


async def test_a_large_result_is_placed_in_the_output_arena_and_freed_on_release(
    start_worker: Any, arenas: Any,
) -> None:
    a = arenas()
    data = os.urandom(5 * PAGE)
    a.input[0:len(data)] = data
    w, f = await shm_worker(start_worker, a)
    await send_ref(f, 1, "echo_payload", 0, len(data))
    result = (await f.ended(1)).result
    assert result.payload == b"" and result.json == b"null"
    ref = result.payload_ref
    assert ref.length == len(data) and ref.offset % PAGE == 0
    assert a.output[ref.offset:ref.offset + ref.length] == data
    out = shared_of(w).output
    assert out.in_use() == 5 * PAGE, "held until the host releases it"
    await f.call.write(pb.HostFrame(release=pb.Release(offsets=[ref.offset])))
    await wait_for(lambda: out.in_use() == 0)
    await f.close()


async def test_small_payloads_and_results_stay_in_the_frame(start_worker: Any, arenas: Any) -> None:
    a = arenas()
    _, f = await shm_worker(start_worker, a, threshold=PAGE)
    await f.send(1, "echo_payload", payload=b"x" * (PAGE - 1))
    result = (await f.ended(1)).result
    assert result.payload == b"x" * (PAGE - 1) and not result.HasField("payload_ref")
    await f.send(2, "payload_info", payload=b"abc")
    assert (await f.ended(2)).result.json == (
        b'{"size":3,"type":"bytes","readonly":true,"shared":false}')
    await f.close()


async def test_a_result_built_in_ctx_buffer_is_sent_without_a_copy(
    start_worker: Any, arenas: Any,
) -> None:
    a = arenas()
    w, f = await shm_worker(start_worker, a)
    await f.send(1, "fill", size=3 * PAGE, value=7)
    ref = (await f.ended(1)).result.payload_ref
    assert a.output[ref.offset:ref.offset + ref.length] == b"\x07" * (3 * PAGE)
    out = shared_of(w).output
    assert out.in_use() == 3 * PAGE, "one region: the buffer itself, no copy of it"
    # A slice of a buffer is sent in place too; the release names the slice's offset.
    await f.send(2, "fill_slice", size=4 * PAGE, start=PAGE + 3, stop=3 * PAGE)
    ref2 = (await f.ended(2)).result.payload_ref
    assert ref2.length == 2 * PAGE - 3
    whole = bytes(i % 251 for i in range(251)) * (4 * PAGE // 251) + bytes(range(4 * PAGE % 251))
    assert a.output[ref2.offset:ref2.offset + ref2.length] == whole[PAGE + 3:3 * PAGE]
    assert out.in_use() == 7 * PAGE
    await f.call.write(pb.HostFrame(release=pb.Release(offsets=[ref.offset, ref2.offset])))
    await wait_for(lambda: out.in_use() == 0)
    await f.close()


async def test_a_full_output_arena_holds_results_back_until_the_host_releases(
    start_worker: Any, arenas: Any,
) -> None:
    a = arenas(out_size=4 * PAGE)
    a.input[0:3 * PAGE] = b"a" * (3 * PAGE)
    _, f = await shm_worker(start_worker, a)
    await send_ref(f, 1, "echo_payload", 0, 3 * PAGE)
    first = (await f.ended(1)).result.payload_ref
    await send_ref(f, 2, "echo_payload", 0, 3 * PAGE)
    await asyncio.sleep(0.2)
    assert 2 not in f.got, "no room: the second result waits"
    await f.call.write(pb.HostFrame(release=pb.Release(offsets=[first.offset])))
    second = (await f.ended(2)).result.payload_ref
    assert second.length == 3 * PAGE
    await f.close()


async def test_a_cancelled_call_waiting_for_room_ends_and_frees_nothing_it_lacks(
    start_worker: Any, arenas: Any,
) -> None:
    a = arenas(out_size=4 * PAGE)
    w, f = await shm_worker(start_worker, a)
    await send_ref(f, 1, "echo_payload_async", 0, 3 * PAGE)
    await f.ended(1)
    await send_ref(f, 2, "echo_payload_async", 0, 3 * PAGE)
    await asyncio.sleep(0.1)
    await f.call.write(pb.HostFrame(call_id=2, cancel=pb.Cancel(reason="cancelled")))
    assert (await f.ended(2)).body_ended.cancelled
    assert shared_of(w).output.in_use() == 3 * PAGE
    await f.close()


async def test_results_over_the_payload_limit_fail_their_call(start_worker: Any, arenas: Any) -> None:
    a = arenas(out_size=4 * PAGE)
    w, f = await shm_worker(start_worker, a, shm_max_payload=2 * PAGE)
    await f.send(1, "fill", size=3 * PAGE, value=1)
    await f.send(2, "large", size=5 * PAGE)
    error = (await f.ended(1)).tool_error
    assert error.type == "pyvisor_worker.PayloadTooLarge" and "limit of 8192" in error.message
    failed = (await f.ended(2)).failed
    assert failed.reason == "message_too_large", failed
    assert shared_of(w).output.in_use() == 0
    await f.close()


async def test_stream_chunks_travel_through_the_output_arena(start_worker: Any, arenas: Any) -> None:
    a = arenas(out_size=16 * PAGE)
    w, f = await shm_worker(start_worker, a)
    await f.send(1, "frames", stream=True, credit=32, n=40, size=2 * PAGE)
    # 40 chunks of 2 pages do not fit 16 pages: the stream goes on as the host releases.
    for i in range(40):
        await wait_for(lambda i=i: len(f.got.get(1, [])) > i)  # type: ignore[misc]
        ref = f.got[1][i].chunk.payload_ref
        assert a.output[ref.offset:ref.offset + ref.length] == bytes([i % 256]) * (2 * PAGE)
        await f.call.write(pb.HostFrame(release=pb.Release(offsets=[ref.offset])))
        await f.call.write(pb.HostFrame(call_id=1, credit=pb.Credit(chunks=1)))
    assert (await f.ended(1)).end.chunks == 40
    await wait_for(lambda: shared_of(w).output.in_use() == 0)
    await f.close()


async def test_without_arenas_a_payload_ref_is_refused_and_ctx_buffer_is_plain_memory(
    start_worker: Any,
) -> None:
    w = await start_worker()
    f = Frames(w.stub)
    await send_ref(f, 1, "payload_size", 0, 10)
    assert (await f.ended(1)).failed.reason == "invalid_argument"
    await f.send(2, "fill", size=3 * PAGE, value=2)
    assert (await f.ended(2)).result.payload == b"\x02" * (3 * PAGE)
    await f.close()


def test_the_allocator_coalesces_and_reuses_the_lowest_pages() -> None:
    fd = os.memfd_create("alloc")
    os.ftruncate(fd, 8 * PAGE)
    arena = OutputArena(fd)
    offs = [arena.try_alloc(PAGE) for _ in range(8)]
    assert offs == [i * PAGE for i in range(8)]
    assert arena.try_alloc(1) is None
    for off in (offs[3], offs[1], offs[2], offs[0]):
        assert off is not None
        arena.free(off)
    assert arena.try_alloc(4 * PAGE) == 0
    assert address(arena.map) == arena.base
    os.close(fd)


async def test_a_stream_cancelled_while_waiting_for_credit_gives_its_placed_chunk_back(
    start_worker: Any, arenas: Any,
) -> None:
    a = arenas(out_size=16 * PAGE)
    w, f = await shm_worker(start_worker, a)
    await f.send(1, "frames", stream=True, credit=1, n=10, size=2 * PAGE)
    await wait_for(lambda: len(f.got.get(1, [])) == 1)
    out = shared_of(w).output
    await wait_for(lambda: out.in_use() == 4 * PAGE)  # the sent chunk and the next one, placed
    await f.call.write(pb.HostFrame(call_id=1, cancel=pb.Cancel(reason="cancelled")))
    assert (await f.ended(1)).body_ended.cancelled
    ref = f.got[1][0].chunk.payload_ref
    await f.call.write(pb.HostFrame(release=pb.Release(offsets=[ref.offset])))
    await wait_for(lambda: out.in_use() == 0)
    await f.close()


async def test_free_pages_above_the_retained_size_go_back_after_the_trim_delay() -> None:
    fd = os.memfd_create("trim")
    os.ftruncate(fd, 8 * PAGE)
    arena = OutputArena(fd, retain=2 * PAGE, trim_after=0.01)
    off = arena.try_alloc(8 * PAGE)
    assert off == 0
    arena.view[:] = b"\x01" * (8 * PAGE)
    arena.free(off)
    await wait_for(lambda: arena.view[7 * PAGE] == 0)
    assert arena.view[3 * PAGE] == 0, "pages above retain are given back"
    assert arena.view[0] == 1 and arena.view[2 * PAGE - 1] == 1, "pages below retain are kept"
    os.close(fd)
