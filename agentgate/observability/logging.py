"""Log lines that say which run they belong to: JSON for machines, a short human line on a terminal.

Every record gets work_order_id, run_id, iteration, phase, trace_id and span_id, taken
from (in order of precedence) the record's own `extra`, `log_context(...)` bound in the
current task, the Temporal activity being executed (workflow id = work-order id), and
the current OpenTelemetry span. A filter on the handler (not a logger adapter) does it,
so third-party and Temporal SDK log lines are enriched as well.
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

CONTEXT_FIELDS = ("work_order_id", "run_id", "iteration", "phase", "trace_id", "span_id")
_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("agentgate_log_context", default={})  # noqa: B039
_HANDLER_MARK = "_agentgate_handler"


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Bind fields (e.g. work_order_id, run_id, iteration, phase) to every log line in this block and its tasks."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: Any) -> None:
    """Bind fields for the rest of the current context (a request handler, an activity)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def _activity_fields() -> dict[str, Any]:
    try:
        from temporalio import activity

        if not activity.in_activity():
            return {}
        info = activity.info()
    except Exception:
        return {}
    return {
        "work_order_id": info.workflow_id,
        "run_id": info.workflow_run_id,
        "activity": info.activity_type,
        "attempt": info.attempt,
    }


def _span_fields() -> dict[str, Any]:
    try:
        from opentelemetry import trace

        ctx = trace.get_current_span().get_span_context()
    except Exception:
        return {}
    if not ctx.is_valid:
        return {}
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


class ContextFilter(logging.Filter):
    """Adds the run's identifiers to each record (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        merged: dict[str, Any] = {}
        merged.update(_span_fields())
        merged.update(_activity_fields())
        merged.update(_context.get())
        for key, value in merged.items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        for key in CONTEXT_FIELDS:
            if not hasattr(record, key):
                setattr(record, key, None)
        return True


class _HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        tags = [
            f"{short}={getattr(record, key)}"
            for key, short in (("work_order_id", "wo"), ("run_id", "run"), ("iteration", "it"), ("phase", "phase"))
            if getattr(record, key, None) is not None
        ]
        return f"{base} [{' '.join(tags)}]" if tags else base


class _JsonFormatter(JsonFormatter):
    def process_log_record(self, log_record: dict[str, Any]) -> dict[str, Any]:
        # Nulls carry no information and make every line longer.
        return {k: v for k, v in log_record.items() if v is not None}


def _wants_json(stream: TextIO) -> bool:
    forced = os.environ.get("AGENTGATE_LOG_FORMAT", "").lower()
    if forced in ("json", "text"):
        return forced == "json"
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):
        return True


def configure_logging(
    level: int | str = "INFO", json: bool | None = None, stream: TextIO | None = None
) -> logging.Handler:
    """Install one stderr handler on the root logger (replacing one installed earlier by this function).

    `json=None` picks JSON unless the stream is a terminal (`AGENTGATE_LOG_FORMAT=json|text`
    overrides). Idempotent, so API, worker and `agentgate up` may all call it.
    """
    stream = stream or sys.stderr
    use_json = _wants_json(stream) if json is None else json
    handler = logging.StreamHandler(stream)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(ContextFilter())
    if use_json:
        handler.setFormatter(
            _JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
                json_default=str,
            )
        )
    else:
        handler.setFormatter(_HumanFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    return handler
