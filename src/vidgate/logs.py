"""Stdlib logging with the current request id (and task id, in the worker) on every line.

Two formats: text for people, or one JSON object per line for log shippers (Loki, ELK,
CloudWatch). The JSON formatter is a few lines of the standard library rather than
python-json-logger: the fields are fixed, and nothing else needs the dependency.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

current_request_id: ContextVar[str] = ContextVar("current_request_id", default="-")
# Set by the worker while it works on a task (each task step runs in its own asyncio task).
current_task_id: ContextVar[str | None] = ContextVar("current_task_id", default=None)

# uvicorn's own loggers join ours in JSON mode, so every line of the process is JSON.
_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get()
        if not hasattr(record, "task_id"):
            record.task_id = current_task_id.get()
        return True


def _utc_ms(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, and
    request_id / task_id when known; a traceback goes in `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc_ms(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "-")
        if request_id != "-":
            line["request_id"] = request_id
        task_id = getattr(record, "task_id", None)
        if task_id is not None:
            line["task_id"] = task_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO", *, log_format: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    names = ("vidgate", *_SERVER_LOGGERS) if log_format == "json" else ("vidgate",)
    for name in names:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
    logging.getLogger("vidgate").setLevel(level.upper())
