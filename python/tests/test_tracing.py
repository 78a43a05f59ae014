"""Tracing: W3C propagation into server and tool spans, log fields, stderr span lines."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import args, tools_with, wait_for, worker_env
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from pyvisor_worker import telemetry
from pyvisor_worker._proto import worker_pb2 as pb
from pyvisor_worker.telemetry import Tracing

EXECUTE = "/pyvisor.worker.v1.WorkerService/Execute"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
SPAN_KEYS = {"name", "trace_id", "span_id", "parent_span_id", "kind", "start_unix_nano",
             "end_unix_nano", "status", "status_message", "attributes", "service"}


@pytest.fixture(scope="session")
def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    """One global SDK provider for the session (the global can be set only once)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=telemetry.resource({}, "w-test"), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.set_propagator()
    trace.set_tracer_provider(provider)
    return provider, exporter


@pytest.fixture
def spans(_provider: tuple[TracerProvider, InMemorySpanExporter]) -> Iterator[InMemorySpanExporter]:
    _provider[1].clear()
    yield _provider[1]
    _provider[1].clear()


@pytest.fixture
def tracing(_provider: tuple[TracerProvider, InMemorySpanExporter]) -> Tracing:
    return Tracing(_provider[0])


def hexid(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def by_name(spans: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans.get_finished_spans()}


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent else None


def traceparent(sampled: bool = True) -> tuple[str, str]:
    return ("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-{'01' if sampled else '00'}")


async def test_client_server_tool_spans_form_one_chain(
    start_worker: Any, tracing: Tracing, spans: InMemorySpanExporter
) -> None:
    w = await start_worker(tracing=tracing)
    with trace.get_tracer("test").start_as_current_span("client", kind=SpanKind.CLIENT) as client:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        md = (*carrier.items(), ("x-correlation-id", "c-1"))
        r = await w.stub.Execute(pb.ExecuteRequest(tool="echo", arguments=args(value=1)),
                                 metadata=md)
    assert r.result.json == b"1"
    got = by_name(spans)
    server, tool = got[EXECUTE], got["tool echo"]
    ctx = client.get_span_context()
    assert {s.context.trace_id for s in (server, tool)} == {ctx.trace_id}
    assert server.kind is SpanKind.SERVER and parent_of(server) == ctx.span_id
    assert server.parent is not None and server.parent.is_remote
    assert tool.kind is SpanKind.INTERNAL and parent_of(tool) == server.context.span_id
    assert server.attributes is not None and tool.attributes is not None
    assert server.attributes["pyvisor.correlation_id"] == "c-1"
    assert tool.attributes["pyvisor.tool"] == "echo"
    assert tool.attributes["pyvisor.correlation_id"] == "c-1"
    assert "pyvisor.session_id" not in tool.attributes
    assert tool.status.status_code is StatusCode.UNSET


async def test_unsampled_parent_records_nothing(
    start_worker: Any, tracing: Tracing, spans: InMemorySpanExporter
) -> None:
    w = await start_worker(tracing=tracing)
    r = await w.stub.Execute(pb.ExecuteRequest(tool="add", arguments=args(a=1, b=2)),
                             metadata=(traceparent(sampled=False),))
    assert r.result.json == b"3"
    assert spans.get_finished_spans() == ()


async def test_tool_error_marks_the_tool_span(
    start_worker: Any, tracing: Tracing, spans: InMemorySpanExporter
) -> None:
    w = await start_worker(tracing=tracing)
    r = await w.stub.Execute(pb.ExecuteRequest(tool="raise", arguments=args(message="bad")),
                             metadata=(traceparent(),))
    assert r.WhichOneof("outcome") == "error"
    tool = by_name(spans)["tool raise"]
    assert tool.status.status_code is StatusCode.ERROR
    assert tool.status.description == "ValueError: bad"
    assert [e.name for e in tool.events] == ["exception"]
    assert tool.context.trace_id == int(TRACE_ID, 16)


async def test_session_id_attribute(
    start_worker: Any, tracing: Tracing, spans: InMemorySpanExporter
) -> None:
    w = await start_worker(tracing=tracing)
    await w.stub.OpenSession(pb.OpenSessionRequest(session_id="s-1"))
    await w.stub.Execute(pb.ExecuteRequest(tool="session_set", session_id="s-1",
                                           arguments=args(key="k", value=1)))
    tool = by_name(spans)["tool session_set"]
    assert tool.attributes is not None and tool.attributes["pyvisor.session_id"] == "s-1"


@pytest.mark.parametrize("name", ["count", "count_sync"])
async def test_stream_is_one_tool_span_with_chunk_events(
    start_worker: Any, tracing: Tracing, spans: InMemorySpanExporter, name: str
) -> None:
    w = await start_worker(tracing=tracing)
    call = w.stub.ExecuteStream(pb.ExecuteRequest(tool=name, arguments=args(n=3)),
                                metadata=(traceparent(),))
    responses = [m async for m in call]
    assert [m.WhichOneof("event") for m in responses] == ["chunk"] * 3 + ["done"]
    got = by_name(spans)
    server, tool = got["/pyvisor.worker.v1.WorkerService/ExecuteStream"], got[f"tool {name}"]
    assert parent_of(server) == int(PARENT_ID, 16)
    assert parent_of(tool) == server.context.span_id
    assert [(e.name, dict(e.attributes or {})) for e in tool.events] == [
        ("chunk", {"index": i}) for i in range(3)
    ]


async def test_stream_contract_errors_still_work_when_traced(
    start_worker: Any, tracing: Tracing, spans: InMemorySpanExporter
) -> None:
    w = await start_worker(tracing=tracing)
    call = w.stub.ExecuteStream(pb.ExecuteRequest(tool="nope"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        [m async for m in call]
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    server = by_name(spans)["/pyvisor.worker.v1.WorkerService/ExecuteStream"]
    assert server.attributes is not None
    assert server.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]


async def test_sync_tool_in_a_thread_keeps_the_context(
    start_worker: Any, tracing: Tracing, spans: InMemorySpanExporter
) -> None:
    def nested() -> str:
        with trace.get_tracer("tool-code").start_as_current_span("inner"):
            return threading.current_thread().name

    w = await start_worker(tools_with(nested), tracing=tracing)
    r = await w.stub.Execute(pb.ExecuteRequest(tool="nested"), metadata=(traceparent(),))
    assert json.loads(r.result.json).startswith("pyvisor-tool")
    got = by_name(spans)
    assert parent_of(got["inner"]) == got["tool nested"].context.span_id
    assert got["inner"].context.trace_id == int(TRACE_ID, 16)


async def test_tool_log_line_carries_tool_span_and_correlation_id(
    start_worker: Any, tracing: Tracing, spans: InMemorySpanExporter, json_logs: Any
) -> None:
    def chatty() -> bool:
        logging.getLogger("tests.chatty").info("hello from the tool")
        return True

    w = await start_worker(tools_with(chatty), tracing=tracing)
    await w.stub.Execute(pb.ExecuteRequest(tool="chatty", correlation_id="c-log"),
                         metadata=(traceparent(),))
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    (rec,) = [x for x in lines if x["message"] == "hello from the tool"]
    tool = by_name(spans)["tool chatty"]
    assert rec["trace_id"] == TRACE_ID
    assert rec["span_id"] == hexid(tool.context.span_id, 16)
    assert rec["correlation_id"] == "c-log"
    # The code that ran the call, on its span and its log lines (docs/upgrades.md).
    version = w.worker.servicer.dispatcher.code_version
    assert len(version) == 12
    assert tool.attributes["pyvisor.pool.version"] == version
    assert rec["code_version"] == version


async def test_correlation_id_from_baggage(
    start_worker: Any, tracing: Tracing, spans: InMemorySpanExporter
) -> None:
    w = await start_worker(tracing=tracing)
    md = (traceparent(), ("baggage", "tenant=a,correlation_id=b-7"))
    r = await w.stub.Execute(pb.ExecuteRequest(tool="whoami"), metadata=md)
    assert json.loads(r.result.json)["correlation_id"] == "b-7"
    # x-correlation-id wins over baggage
    r = await w.stub.Execute(pb.ExecuteRequest(tool="whoami"),
                             metadata=(*md, ("x-correlation-id", "x-1")))
    assert json.loads(r.result.json)["correlation_id"] == "x-1"


async def test_baggage_correlation_id_without_tracing(start_worker: Any) -> None:
    w = await start_worker()
    r = await w.stub.Execute(pb.ExecuteRequest(tool="whoami"),
                             metadata=(("baggage", "correlation_id=b-8"),))
    assert json.loads(r.result.json)["correlation_id"] == "b-8"


@pytest.mark.parametrize("trace_heartbeats", [False, True])
async def test_heartbeat_and_health_spans(
    start_worker: Any, spans: InMemorySpanExporter,
    _provider: tuple[TracerProvider, InMemorySpanExporter], trace_heartbeats: bool,
) -> None:
    w = await start_worker(tracing=Tracing(_provider[0], trace_heartbeats=trace_heartbeats))
    hb = await w.stub.Heartbeat(pb.HeartbeatRequest(sequence=4, correlation_id="hb-4"),
                                metadata=(traceparent(),))
    assert hb.sequence == 4
    health = health_pb2_grpc.HealthStub(w.channel)
    await health.Check(health_pb2.HealthCheckRequest(), metadata=(traceparent(),))
    names = sorted(s.name for s in spans.get_finished_spans())
    if trace_heartbeats:
        assert names == ["/grpc.health.v1.Health/Check",
                         "/pyvisor.worker.v1.WorkerService/Heartbeat"]
    else:
        assert names == []


async def test_no_tracing_means_no_interceptor(start_worker: Any, spans: InMemorySpanExporter) -> None:
    assert telemetry.setup({}) is None
    assert telemetry.setup({"OTEL_TRACES_EXPORTER": "none"}) is None
    assert telemetry.setup({"PYVISOR_TRACE_STDERR": "1", "OTEL_SDK_DISABLED": "true"}) is None
    w = await start_worker()
    assert w.worker.interceptors == () and w.worker.servicer._tracer is None
    await w.stub.Execute(pb.ExecuteRequest(tool="add", arguments=args(a=1, b=2)),
                         metadata=(traceparent(),))
    assert spans.get_finished_spans() == ()


def processors(t: Tracing) -> list[Any]:
    return list(t.provider._active_span_processor._span_processors)


def test_setup_resource_and_exporters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "pyvisor")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    lines: list[str] = []
    env = {"OTEL_TRACES_EXPORTER": "console,otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
           "PYVISOR_TRACE_STDERR": "1", "OTEL_TRACES_SAMPLER": "always_on"}
    t = telemetry.setup(env, "w-3", write_line=lines.append, set_global=False)
    assert t is not None and not t.trace_heartbeats
    try:
        attrs = t.provider.resource.attributes
        assert attrs["service.name"] == "pyvisor-worker"
        assert attrs["pyvisor.worker.id"] == "w-3" and attrs["process.pid"] == os.getpid()
        assert attrs["service.version"] and attrs["deployment.environment"] == "test"
        kinds = [type(p) for p in processors(t)]
        assert kinds == [SimpleSpanProcessor, BatchSpanProcessor, SimpleSpanProcessor]
        with t.provider.get_tracer("t").start_as_current_span("s", attributes={"k": (1, 2)}):
            pass
        (line,) = lines
        span = json.loads(line)["pyvisor_span"]
        assert set(span) == SPAN_KEYS
        assert span["attributes"] == {"k": [1, 2]} and span["parent_span_id"] == ""
    finally:
        t.shutdown(2.0)
    monkeypatch.setenv("PYVISOR_SERVICE_NAME", "custom")
    assert telemetry.resource({"PYVISOR_SERVICE_NAME": "custom"}, "").attributes[
        "service.name"] == "custom"


def test_setup_otlp_grpc_and_heartbeat_flag() -> None:
    t = telemetry.setup({"OTEL_TRACES_EXPORTER": "otlp", "PYVISOR_TRACE_HEARTBEATS": "1",
                         "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                         "OTEL_TRACES_SAMPLER_ARG": "0.25"}, set_global=False)
    assert t is not None and t.trace_heartbeats
    try:
        (proc,) = processors(t)
        assert isinstance(proc, BatchSpanProcessor)
        assert "0.25" in t.provider.sampler.get_description()
    finally:
        t.shutdown(2.0)


async def test_stderr_span_lines_from_a_real_worker(
    cli_worker: Any, cli_stub: Any, short_dir: Path
) -> None:
    sock = short_dir / "w.sock"
    env = worker_env(PYVISOR_TRACE_STDERR="1", OTEL_SERVICE_NAME="something",
                     OTEL_TRACES_EXPORTER="none")
    w = cli_worker("--tools", "pyvisor_worker.examples", "--socket", str(sock),
                   "--worker-id", "w-9", env=env)
    stub = cli_stub(str(sock))
    md = (traceparent(), ("x-correlation-id", "c-9"))
    r = await stub.Execute(pb.ExecuteRequest(tool="log", arguments=args(message="inside")),
                           metadata=md)
    assert r.result.json == b"true"
    await stub.Heartbeat(pb.HeartbeatRequest(sequence=1, correlation_id="hb-1"), metadata=md)
    await stub.Shutdown(pb.ShutdownRequest(grace_millis=1000), metadata=md)
    assert w.proc.wait(10) == 0
    lines = [json.loads(line) for line in w.stderr().splitlines()]
    found = {x["pyvisor_span"]["name"]: x["pyvisor_span"] for x in lines if "pyvisor_span" in x}
    assert all(set(x) == {"pyvisor_span"} for x in lines if "pyvisor_span" in x)
    assert set(found) == {EXECUTE, "tool log", "/pyvisor.worker.v1.WorkerService/Shutdown"}
    server, tool = found[EXECUTE], found["tool log"]
    for span in found.values():
        assert set(span) == SPAN_KEYS
        assert span["service"] == "pyvisor-worker" and span["trace_id"] == TRACE_ID
        assert span["end_unix_nano"] >= span["start_unix_nano"] > 0
    assert server["kind"] == "SERVER" and server["parent_span_id"] == PARENT_ID
    assert server["attributes"]["pyvisor.correlation_id"] == "c-9"
    assert tool["kind"] == "INTERNAL" and tool["parent_span_id"] == server["span_id"]
    assert tool["status"] == "UNSET" and tool["status_message"] == ""
    version = tool["attributes"].pop("pyvisor.pool.version")
    assert len(version) == 12, "the code that ran the call"
    assert tool["attributes"] == {"pyvisor.tool": "log", "pyvisor.correlation_id": "c-9"}
    (log_line,) = [x for x in lines if x.get("message") == "inside"]
    assert log_line["trace_id"] == TRACE_ID and log_line["span_id"] == tool["span_id"]
    assert log_line["correlation_id"] == "c-9"


async def test_cancelled_stream_ends_its_tool_span(
    start_worker: Any, tracing: Tracing, spans: InMemorySpanExporter
) -> None:
    w = await start_worker(tracing=tracing)
    call = w.stub.ExecuteStream(pb.ExecuteRequest(tool="count_sync",
                                                  arguments=args(n=1000, interval=0.01)),
                                metadata=(traceparent(),))
    first = await call.read()
    assert first.WhichOneof("event") == "chunk"
    call.cancel()
    await wait_for(lambda: "tool count_sync" in by_name(spans))
    tool = by_name(spans)["tool count_sync"]
    assert tool.attributes is not None and tool.attributes["pyvisor.cancelled"] is True
    await wait_for(lambda: w.worker.servicer.in_flight == 0)
