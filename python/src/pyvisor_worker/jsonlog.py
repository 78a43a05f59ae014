"""JSON-lines logging on stderr: one object per record, with correlation fields from contextvars
and trace fields from the current OpenTelemetry span."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from opentelemetry import trace

from pyvisor_worker.context import code_version_var, correlation_id_var, span_id_var, trace_id_var

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}

_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
                logging.ERROR: "error", logging.CRITICAL: "critical"}

_RESERVED = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__
) | {"message", "asctime", "taskName"}


def _level_name(levelno: int) -> str:
    name = _LEVEL_NAMES.get(levelno)
    if name is not None:
        return name
    for threshold in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= threshold:
            return _LEVEL_NAMES[threshold]
    return "debug"


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, message, worker_id,
    correlation_id, trace_id, span_id, code_version (on a call's lines), exception (when
    present) and the record's extras."""

    def __init__(self, worker_id: str = "") -> None:
        super().__init__()
        self.worker_id = worker_id

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, Any] = {
            "time": f"{seconds}.{int(record.msecs):03d}Z",
            "level": _level_name(record.levelno),
            "logger": record.name,
            "message": record.getMessage(),
            "worker_id": self.worker_id,
            "correlation_id": correlation_id_var.get(),
        }
        version = code_version_var.get()
        if version:  # a call's lines: the code that ran it
            out["code_version"] = version
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            out["trace_id"] = format(span_context.trace_id, "032x")
            out["span_id"] = format(span_context.span_id, "016x")
        else:
            out["trace_id"] = trace_id_var.get()
            out["span_id"] = span_id_var.get()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key not in out:
                out[key] = value
        return json.dumps(out, ensure_ascii=False, default=str)


_handler: logging.StreamHandler[TextIO] | None = None


def write_line(line: str) -> None:
    """Write one raw line to the log stream (stderr), never interleaved with a log record."""
    handler = _handler
    if handler is None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        return
    handler.acquire()
    try:
        handler.stream.write(line + "\n")
        handler.stream.flush()
    finally:
        handler.release()


def configure(level: str = "info", worker_id: str = "", stream: TextIO | None = None) -> None:
    """Route the root logger (and so every library's and tool's logger) to JSON on stderr."""
    global _handler
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(worker_id))
    _handler = handler
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    logging.captureWarnings(True)
