"""Log records that carry the request id and trace id, as text or JSON lines.

`microstd run` calls `configure_logging()` unless the application configured
logging itself; an application may call it too, or add `ContextFilter` and one
of the formatters to its own handlers:

    2025-01-01 12:00:00,000 INFO microstd.service: greeter: listening on 127.0.0.1:8080
    {"time": "2025-01-01T12:00:00.000+00:00", "level": "INFO", "logger": "microstd.service",
     "message": "...", "request_id": "4f1c...", "trace_id": "0af7..."}

The request id is that of the RPC call being handled (`current_context()`);
the trace and span ids those of the current OpenTelemetry span, when one is.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import IO, Any, Literal

from microstd.rpc.context import current_context

__all__ = ["ContextFilter", "JsonFormatter", "TextFormatter", "configure_logging"]

LogFormat = Literal["text", "json"]
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _trace_ids() -> tuple[str, str]:
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return "", ""  # nobody imported OpenTelemetry: there is no span
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return "", ""
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


class ContextFilter(logging.Filter):
    """Sets `request_id`, `trace_id` and `span_id` on each record ("" when none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            ctx = current_context()
            record.request_id = ctx.request_id if ctx is not None else ""
        if not hasattr(record, "trace_id"):
            record.trace_id, record.span_id = _trace_ids()
        return True


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`, then `[request_id=... trace_id=...]` when set."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = [
            f"{key}={value}"
            for key in ("request_id", "trace_id")
            if (value := getattr(record, key, ""))
        ]
        if not extra:
            return text
        first, newline, rest = text.partition("\n")  # after the message, before a traceback
        return f"{first} [{' '.join(extra)}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(
                record.created, datetime.timezone.utc
            ).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "trace_id", "span_id"):
            value = getattr(record, key, "")
            if value:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(
    level: str | int = "INFO",
    format: LogFormat = "text",
    *,
    stream: IO[str] | None = None,
    force: bool = False,
) -> bool:
    """Log to `stream` (stderr) at `level`, as `format` ("text" or "json").

    Does nothing and returns False when the root logger already has handlers
    (the application configured logging), unless `force`. Returns True when it
    configured logging.
    """
    if format not in ("text", "json"):
        raise ValueError(f"log format is 'text' or 'json', got {format!r}")
    if isinstance(level, str):
        level = level.upper()
        if level not in _LEVELS:
            raise ValueError(f"log level is one of {', '.join(_LEVELS)}, got {level!r}")
    root = logging.getLogger()
    if root.handlers and not force:
        return False
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    if force:
        for old in list(root.handlers):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return True
