"""The JSON log line format."""

from __future__ import annotations

import io
import json
import logging
import re

from pyvisor_worker.context import correlation_id_var
from pyvisor_worker.jsonlog import JsonFormatter


def format_record(logger_name: str, level: int, msg: str, **kwargs: object) -> dict[str, object]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("w-1"))
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        logger.log(level, msg, **kwargs)  # type: ignore[arg-type]
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    line = stream.getvalue()
    assert line.count("\n") == 1
    out: dict[str, object] = json.loads(line)
    return out


def test_fields_and_time_format() -> None:
    token = correlation_id_var.set("c-9")
    try:
        rec = format_record("t.fields", logging.WARNING, "hello",
                            extra={"count": 3, "obj": object()})
    finally:
        correlation_id_var.reset(token)
    assert rec["level"] == "warning" and rec["logger"] == "t.fields"
    assert rec["worker_id"] == "w-1" and rec["correlation_id"] == "c-9"
    assert rec["trace_id"] == "" and rec["span_id"] == ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(rec["time"]))
    assert rec["count"] == 3 and str(rec["obj"]).startswith("<object")
    assert "exception" not in rec


def test_exception_is_formatted() -> None:
    try:
        raise ValueError("nope")
    except ValueError:
        rec = format_record("t.exc", logging.ERROR, "failed", exc_info=True)
    assert rec["level"] == "error" and "ValueError: nope" in str(rec["exception"])
    assert str(rec["exception"]).startswith("Traceback")


def test_message_with_newlines_stays_on_one_line() -> None:
    rec = format_record("t.nl", logging.INFO, "a\nb")
    assert rec["message"] == "a\nb"
