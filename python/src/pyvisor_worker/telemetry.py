"""OpenTelemetry tracing: set up from the ``OTEL_*`` variables the Go side passes through.

Tracing is on when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``; ``none``
or unset means none) or ``PYVISOR_TRACE_STDERR=1`` asks for finished spans as tagged JSON lines
on stderr. Otherwise ``setup`` returns None and nothing is installed: no SDK, no interceptor.

The gRPC server then gets opentelemetry-instrumentation-grpc's aio interceptor (one SERVER
span per RPC, child of the caller's W3C ``traceparent``), heartbeats and health checks excluded
unless ``PYVISOR_TRACE_HEARTBEATS=1``. The servicer opens the ``tool <name>`` spans.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, cast

import grpc
from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pyvisor_worker import __version__, jsonlog

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler

log = logging.getLogger("pyvisor_worker.telemetry")

TRACER_NAME = "pyvisor_worker"
DEFAULT_SERVICE_NAME = "pyvisor-worker"
SPAN_LINE_KEY = "pyvisor_span"

ENV_SERVICE_NAME = "PYVISOR_SERVICE_NAME"
ENV_TRACE_STDERR = "PYVISOR_TRACE_STDERR"
ENV_TRACE_HEARTBEATS = "PYVISOR_TRACE_HEARTBEATS"

# The Channel is one RPC for the life of the worker: its calls get spans of their own
# (channel.py), the stream itself none.
# Heartbeats, and Describe: the host's wait for the load phase, under its own "worker
# start" span; metadata, not work.
_UNTRACED_METHODS = frozenset({"/pyvisor.worker.v1.WorkerService/Heartbeat",
                               "/pyvisor.worker.v1.WorkerService/Describe"})
_UNINSTRUMENTED_METHODS = frozenset({"/pyvisor.worker.v1.WorkerService/Channel"})
_UNTRACED_PREFIX = "/grpc.health.v1."


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def set_propagator() -> None:
    """Use W3C trace context + baggage, whatever ``OTEL_PROPAGATORS`` says (the Go side's)."""
    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    )


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The exporters listed in ``OTEL_TRACES_EXPORTER`` (``none`` and blanks dropped)."""
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    return [n for n in names if n and n != "none"]


def enabled(environ: Mapping[str, str]) -> bool:
    """True when the environment asks for tracing."""
    if _truthy(environ.get("OTEL_SDK_DISABLED")):
        return False
    return bool(exporter_names(environ)) or _truthy(environ.get(ENV_TRACE_STDERR))


def resource(environ: Mapping[str, str], worker_id: str) -> Resource:
    """The worker's resource: ``OTEL_RESOURCE_ATTRIBUTES`` overridden by pyvisor's own
    attributes, so ``service.name`` is never the Go side's ``OTEL_SERVICE_NAME``."""
    from opentelemetry.sdk.resources import Resource

    return Resource.create({
        "service.name": environ.get(ENV_SERVICE_NAME) or DEFAULT_SERVICE_NAME,
        "service.version": __version__,
        "process.pid": os.getpid(),
        "pyvisor.worker.id": worker_id,
    })


def sampler(environ: Mapping[str, str]) -> Sampler:
    """The sampler named by ``OTEL_TRACES_SAMPLER`` (+ ``_ARG``); default parentbased_always_on."""
    from opentelemetry.sdk.trace import sampling

    name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    arg = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    ratio = 1.0
    if arg:
        try:
            ratio = min(max(float(arg), 0.0), 1.0)
        except ValueError:
            log.warning("OTEL_TRACES_SAMPLER_ARG=%r is not a number; using 1.0", arg)
    choices: dict[str, Callable[[], Sampler]] = {
        "always_on": lambda: sampling.ALWAYS_ON,
        "always_off": lambda: sampling.ALWAYS_OFF,
        "traceidratio": lambda: sampling.TraceIdRatioBased(ratio),
        "parentbased_always_on": lambda: sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": lambda: sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": lambda: sampling.ParentBased(
            sampling.TraceIdRatioBased(ratio)
        ),
    }
    make = choices.get(name)
    if make is None:
        log.warning("unknown OTEL_TRACES_SAMPLER %r; using parentbased_always_on", name)
        make = choices["parentbased_always_on"]
    return make()


# --- the stderr span lines ------------------------------------------------------------------


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """The ``pyvisor_span`` object of a finished span."""
    ctx = span.get_span_context()
    parent = span.parent
    attributes = {
        k: list(v) if isinstance(v, tuple) else v for k, v in (span.attributes or {}).items()
    }
    return {
        "name": span.name,
        "trace_id": format(ctx.trace_id, "032x") if ctx else "",
        "span_id": format(ctx.span_id, "016x") if ctx else "",
        "parent_span_id": format(parent.span_id, "016x") if parent else "",
        "kind": span.kind.name,
        "start_unix_nano": span.start_time or 0,
        "end_unix_nano": span.end_time or 0,
        "status": span.status.status_code.name,
        "status_message": span.status.description or "",
        "attributes": attributes,
        "service": str(span.resource.attributes.get("service.name", "")),
    }


def span_line(span: ReadableSpan) -> str:
    """One JSON line (no newline): ``{"pyvisor_span": {...}}``."""
    return json.dumps({SPAN_LINE_KEY: span_record(span)}, ensure_ascii=False,
                      separators=(",", ":"), default=str)


def _stderr_exporter(write: Callable[[str], None]) -> SpanExporter:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class StderrSpanExporter(SpanExporter):
        """Write each finished span as one ``pyvisor_span`` JSON line."""

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            for span in spans:
                write(span_line(span))
            return SpanExportResult.SUCCESS

    return StderrSpanExporter()


class _LineStream:
    """A file-like sink for ConsoleSpanExporter that writes through the log stream."""

    def write(self, text: str) -> int:
        jsonlog.write_line(text.rstrip("\n"))
        return len(text)

    def flush(self) -> None:
        pass


# --- set-up ---------------------------------------------------------------------------------


@dataclass
class Tracing:
    """The worker's tracer provider and its settings; ``shutdown`` flushes it once."""

    provider: TracerProvider
    trace_heartbeats: bool = False
    _done: bool = field(default=False, repr=False)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Flush pending spans and shut the provider down, waiting at most ``timeout`` s."""
        if self._done:
            return
        self._done = True

        def work() -> None:
            try:
                self.provider.force_flush(max(int(timeout * 1000), 1))
                self.provider.shutdown()
            except Exception:  # exporting must never break an exit
                log.exception("flushing spans failed")

        thread = threading.Thread(target=work, name="pyvisor-otel-shutdown", daemon=True)
        thread.start()
        thread.join(timeout)


def _otlp_exporter(environ: Mapping[str, str]) -> SpanExporter | None:
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip().lower()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpOTLPSpanExporter,
        )

        return HttpOTLPSpanExporter()
    log.warning("unsupported OTLP protocol %r (use grpc or http/protobuf); no OTLP export",
                protocol)
    return None


def setup(
    environ: Mapping[str, str],
    worker_id: str = "",
    *,
    write_line: Callable[[str], None] | None = None,
    set_global: bool = True,
) -> Tracing | None:
    """Build the tracer provider the environment asks for, or return None (tracing off).

    ``write_line`` receives the stderr span lines (default: the JSON log stream).
    ``set_global`` also installs the provider and the W3C propagators globally.
    """
    if not enabled(environ):
        return None
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )

        provider = TracerProvider(
            sampler=sampler(environ),
            resource=resource(environ, worker_id),
            shutdown_on_exit=False,
        )
        for name in exporter_names(environ):
            if name == "otlp":
                exporter = _otlp_exporter(environ)
                if exporter is not None:
                    provider.add_span_processor(BatchSpanProcessor(exporter))
            elif name == "console":
                console = ConsoleSpanExporter(
                    out=cast(IO[str], _LineStream()), formatter=lambda span: span.to_json(indent=None) + "\n"
                )
                provider.add_span_processor(SimpleSpanProcessor(console))
            else:
                log.warning("unsupported OTEL_TRACES_EXPORTER %r; ignored", name)
        if _truthy(environ.get(ENV_TRACE_STDERR)):
            sink = write_line if write_line is not None else jsonlog.write_line
            provider.add_span_processor(SimpleSpanProcessor(_stderr_exporter(sink)))
    except Exception as exc:  # a bad setting must not stop the worker
        log.error("cannot set up tracing: %s", exc, exc_info=exc)
        return None
    if set_global:
        set_propagator()
        trace.set_tracer_provider(provider)
    return Tracing(provider, trace_heartbeats=_truthy(environ.get(ENV_TRACE_HEARTBEATS)))


# --- the server side ------------------------------------------------------------------------


def traced_method(handler_call_details: Any) -> bool:
    """The heartbeat filter: False for Heartbeat and grpc.health.v1 calls."""
    method: str = handler_call_details.method or ""
    return (
        method not in _UNTRACED_METHODS
        and method not in _UNINSTRUMENTED_METHODS
        and not method.startswith(_UNTRACED_PREFIX)
    )


def instrumented_method(handler_call_details: Any) -> bool:
    """The filter with heartbeats traced: every RPC but the Channel."""
    return (handler_call_details.method or "") not in _UNINSTRUMENTED_METHODS


class GeneratorStreams:
    """A view of a servicer whose ``ExecuteStream`` is an async generator that yields nothing
    (the servicer writes with ``await context.write``): the OpenTelemetry aio interceptor
    iterates a streaming handler's result with ``async for``, which a coroutine does not
    support. Every other attribute is the servicer's own."""

    def __init__(self, servicer: Any) -> None:
        self._servicer = servicer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._servicer, name)

    async def ExecuteStream(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await self._servicer.ExecuteStream(request, context)
        return
        yield  # pragma: no cover - makes this an async generator


def server_interceptors(tracing: Tracing) -> list[grpc.aio.ServerInterceptor]:
    """The interceptors that give each RPC a SERVER span (to append after auth); register
    the servicer wrapped in ``GeneratorStreams`` with them."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    filter_ = instrumented_method if tracing.trace_heartbeats else traced_method
    return [
        aio_server_interceptor(  # type: ignore[no-untyped-call]
            tracer_provider=tracing.provider, filter_=filter_
        )
    ]
