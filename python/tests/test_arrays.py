"""Typed arrays and Arrow tables beside the JSON: numpy arrays of their dtype and shape and
pyarrow tables, read in place from shared memory or the frame, returned the same way."""

from __future__ import annotations

import os
from typing import Any

import pytest
from conftest import args, pb, tools_with
from test_channel import Frames
from test_shm import PAGE, shared_of, shm_worker

from pyvisor_worker import ToolContext
from pyvisor_worker.schema import parameters_of

np = pytest.importorskip("numpy")
pa = pytest.importorskip("pyarrow")
npt = pytest.importorskip("numpy.typing")


def tensor(name: str, arr: Any, ref: Any = None) -> Any:
    w = pb.Array(name=name, format=pb.ARRAY_FORMAT_TENSOR, dtype=arr.dtype.name,
                 shape=list(arr.shape))
    if ref is None:
        w.data = arr.tobytes()
    else:
        w.data_ref.CopyFrom(ref)
    return w


def ipc(table: Any) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


async def call(f: Frames, call_id: int, tool: str, arrays: list[Any], **kwargs: Any) -> Any:
    request = pb.ExecuteRequest(tool=tool, arguments=args(**kwargs), correlation_id="c",
                                arrays=arrays)
    await f.call.write(pb.HostFrame(call_id=call_id, call=pb.Call(request=request)))
    return await f.ended(call_id)


def decoded(a: Any, out: Any) -> Any:
    data = a.data if not a.HasField("data_ref") else bytes(
        out[a.data_ref.offset:a.data_ref.offset + a.data_ref.length])
    if a.format == pb.ARRAY_FORMAT_ARROW:
        return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    return np.frombuffer(data, dtype=a.dtype).reshape(tuple(a.shape))


def info(x: np.ndarray) -> dict[str, Any]:
    return {"dtype": x.dtype.name, "shape": list(x.shape), "writeable": x.flags.writeable}


@pytest.mark.parametrize("dtype", ["bool", "int8", "uint16", "int32", "int64", "float16",
                                   "float32", "float64", "complex64", "complex128"])
async def test_a_tensor_arrives_as_a_read_only_numpy_array_of_its_dtype_and_shape(
    start_worker: Any, dtype: str,
) -> None:
    arr = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    w = await start_worker(tools=tools_with(info))
    f = Frames(w.stub)
    result = (await call(f, 1, "info", [tensor("x", arr)])).result
    assert result.json == b'{"dtype":"%s","shape":[2,3,4],"writeable":false}' % dtype.encode()
    await f.close()


async def test_a_tensor_in_shared_memory_is_read_in_place(start_worker: Any, arenas: Any) -> None:
    seen: dict[str, Any] = {}

    def mean(x: Any, scale: float) -> float:
        seen["address"] = x.ctypes.data
        return float(x.mean()) * scale

    a = arenas()
    arr = np.arange(4096, dtype=np.float64).reshape(64, 64)
    a.input[PAGE:PAGE + arr.nbytes] = arr.tobytes()
    w, f = await shm_worker(start_worker, a, tools=tools_with(mean))
    ref = pb.SharedRef(offset=PAGE, length=arr.nbytes)
    result = (await call(f, 1, "mean", [tensor("x", arr, ref)], scale=2.0)).result
    assert float(result.json) == float(arr.mean()) * 2
    assert seen["address"] == shared_of(w).input_base + PAGE
    await f.close()


async def test_an_arrow_table_arrives_as_a_pyarrow_table_read_in_place(
    start_worker: Any, arenas: Any,
) -> None:
    seen: dict[str, Any] = {}

    def describe(t: Any, ctx: ToolContext) -> dict[str, Any]:
        seen["in_place"] = ctx.in_shared_memory(t.column("n").chunk(0).buffers()[1])
        return {"rows": t.num_rows, "nulls": t.column("s").null_count,
                "s": t.column("s").to_pylist()[:3]}

    table = pa.table({"n": pa.array(range(20000), pa.int64()),
                      "s": pa.array(["a", None, "ç"] + ["x"] * 19997)})
    data = ipc(table)
    a = arenas(in_size=256 * PAGE)
    a.input[0:len(data)] = data
    _w, f = await shm_worker(start_worker, a, tools=tools_with(describe))
    arrow = pb.Array(name="t", format=pb.ARRAY_FORMAT_ARROW,
                     data_ref=pb.SharedRef(offset=0, length=len(data)))
    result = (await call(f, 1, "describe", [arrow])).result
    assert result.json == '{"rows":20000,"nulls":1,"s":["a",null,"ç"]}'.encode()
    assert seen["in_place"], "the column's values are the mapping's bytes"
    await f.close()


async def test_returned_arrays_mix_with_json_and_cross_back_exactly(
    start_worker: Any, arenas: Any,
) -> None:
    def mixed(x: Any) -> dict[str, Any]:
        return {"label": "cat", "doubled": x * 2, "small": x[:1].copy(),
                "table": pa.table({"v": pa.array([1.5, None])}), "n": int(x.size)}

    a = arenas(in_size=256 * PAGE, out_size=256 * PAGE)
    x = np.arange(100_000, dtype=np.int32)
    w, f = await shm_worker(start_worker, a, tools=tools_with(mixed))
    result = (await call(f, 1, "mixed", [tensor("x", x)])).result
    assert result.json == b'{"label":"cat","n":100000}'
    got = {arr.name: arr for arr in result.arrays}
    assert set(got) == {"doubled", "small", "table"}
    assert got["doubled"].HasField("data_ref"), "a large tensor goes through shared memory"
    assert not got["small"].HasField("data_ref"), "a small one stays in the frame"
    assert np.array_equal(decoded(got["doubled"], a.output), x * 2)
    assert np.array_equal(decoded(got["small"], a.output), x[:1])
    assert decoded(got["table"], a.output).column("v").to_pylist() == [1.5, None]
    out = shared_of(w).output
    assert out.in_use() > 0
    await f.call.write(pb.HostFrame(release=pb.Release(offsets=[got["doubled"].data_ref.offset])))
    await f.close()


async def test_a_large_arrow_result_is_written_once_straight_into_shared_memory(
    start_worker: Any, arenas: Any,
) -> None:
    def table(n: int) -> Any:
        return pa.table({"i": pa.array(range(n), pa.int64())})

    a = arenas(out_size=256 * PAGE)
    _w, f = await shm_worker(start_worker, a, tools=tools_with(table))
    result = (await call(f, 1, "table", [], n=50_000)).result
    (arr,) = result.arrays
    assert arr.name == "" and arr.format == pb.ARRAY_FORMAT_ARROW and arr.HasField("data_ref")
    assert decoded(arr, a.output).column("i").to_pylist()[-1] == 49_999
    await f.close()


async def test_a_tensor_built_in_ctx_buffer_is_returned_with_no_copy(
    start_worker: Any, arenas: Any,
) -> None:
    def ramp(n: int, ctx: ToolContext) -> Any:
        out = np.frombuffer(ctx.buffer(n * 4), dtype=np.float32).reshape(n // 2, 2)
        out[:] = np.arange(n, dtype=np.float32).reshape(n // 2, 2)
        return out

    a = arenas()
    w, f = await shm_worker(start_worker, a, tools=tools_with(ramp))
    result = (await call(f, 1, "ramp", [], n=4096)).result
    (arr,) = result.arrays
    assert list(arr.shape) == [2048, 2] and arr.data_ref.offset == 0
    assert shared_of(w).output.in_use() == 4 * PAGE, "the buffer itself, nothing more"
    assert decoded(arr, a.output)[2047, 1] == 4095
    await f.close()


async def test_objects_with_dlpack_cross_as_tensors(start_worker: Any) -> None:
    class Foreign:  # what torch, jax or cupy CPU tensors look like to the worker
        def __init__(self, arr: Any) -> None:
            self.arr = arr

        def __dlpack__(self, **kwargs: Any) -> Any:
            return self.arr.__dlpack__(**kwargs)

        def __dlpack_device__(self) -> Any:
            return self.arr.__dlpack_device__()

    def foreign() -> Any:
        return Foreign(np.eye(3, dtype=np.float32))

    w = await start_worker(tools=tools_with(foreign))
    f = Frames(w.stub)
    (arr,) = (await call(f, 1, "foreign", [])).result.arrays
    assert arr.dtype == "float32" and list(arr.shape) == [3, 3]
    assert np.array_equal(decoded(arr, None), np.eye(3, dtype=np.float32))
    await f.close()


async def test_arrays_that_cannot_cross_are_refused_clearly(start_worker: Any) -> None:
    def strings() -> Any:
        return np.array(["a", "b"])

    w = await start_worker(tools=tools_with(strings, info))
    f = Frames(w.stub)
    err = (await call(f, 1, "strings", [])).tool_error
    assert err.type == "TypeError" and "dtype <U1, which does not cross" in err.message
    bad = pb.Array(name="x", format=pb.ARRAY_FORMAT_TENSOR, dtype="float32", shape=[3], data=b"1234")
    failed = (await call(f, 2, "info", [bad])).failed
    assert failed.reason == "invalid_argument" and "is 12 bytes, the data 4" in failed.message
    twice = (await call(f, 3, "info", [tensor("x", np.zeros(2))], x=1)).failed
    assert failed.reason == "invalid_argument" and "given twice" in twice.message
    json_for_array = (await call(f, 4, "info", [], x=[1, 2])).failed
    assert "must be a tensor" in json_for_array.message
    await f.close()


def test_array_annotations_need_neither_numpy_nor_pyarrow_imported() -> None:
    def tool(x: npt.NDArray[np.float32], t: pa.Table, n: int = 1) -> None:
        return None

    schema = parameters_of(tool, "tool", ToolContext).schema
    assert schema["properties"]["x"] == {"x-pyvisor-array": "tensor"}
    assert schema["properties"]["t"] == {"x-pyvisor-array": "arrow"}


def test_numpy_is_not_loaded_by_a_worker_that_sees_no_array() -> None:
    import subprocess
    import sys
    code = ("import sys, pyvisor_worker.dispatch, pyvisor_worker.channel; "
            "print('numpy' in sys.modules, 'pyarrow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ})
    assert out.stdout.strip() == "False False"


async def test_a_scalar_array_keeps_its_empty_shape(start_worker: Any) -> None:
    def scalar() -> Any:
        return np.full((), 2.5)

    w = await start_worker(tools=tools_with(scalar))
    f = Frames(w.stub)
    (arr,) = (await call(f, 1, "scalar", [])).result.arrays
    assert list(arr.shape) == [] and np.frombuffer(arr.data, "float64")[0] == 2.5
    await f.close()


async def test_an_oversize_result_gives_its_shared_regions_back(
    start_worker: Any, arenas: Any,
) -> None:
    def too_big(n: int) -> dict[str, Any]:
        return {"big": np.zeros(n, dtype=np.uint8), "text": "x" * (2 << 20)}

    a = arenas(out_size=256 * PAGE)
    w, f = await shm_worker(start_worker, a, tools=tools_with(too_big), max_message_bytes=1 << 20)
    failed = (await call(f, 1, "too_big", [], n=100_000)).failed
    assert failed.reason == "message_too_large"
    assert shared_of(w).output.in_use() == 0, "the array placed before the refusal went back"
    await f.close()


async def test_an_arrow_table_that_fails_to_write_gives_its_region_back(
    start_worker: Any, arenas: Any, monkeypatch: Any,
) -> None:
    def table() -> Any:
        return pa.table({"i": pa.array(range(50_000), pa.int64())})

    real = pa.FixedSizeBufferWriter

    def failing(buf: Any) -> Any:
        raise OSError("disk on fire")

    a = arenas(out_size=256 * PAGE)
    w, f = await shm_worker(start_worker, a, tools=tools_with(table))
    monkeypatch.setattr(pa, "FixedSizeBufferWriter", failing)
    failed = (await call(f, 1, "table", [])).failed
    monkeypatch.setattr(pa, "FixedSizeBufferWriter", real)
    assert failed.reason == "internal" and "disk on fire" in failed.message
    assert shared_of(w).output.in_use() == 0
    await f.close()
