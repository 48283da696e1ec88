"""How the server's log lines look: text for people, or one JSON object a line for
log pipelines (``--log-format json``)."""

from __future__ import annotations

import datetime
import json
import logging

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
# What every LogRecord has; anything else on a record was passed as ``extra`` and
# becomes a field of its own (the access log's peer, method, code, duration).
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (ISO 8601, UTC), level, logger, message, pid, any
    ``extra`` fields, and a traceback as one string field (``exc_info``), never as lines
    of its own."""

    def format(self, record: logging.LogRecord) -> str:
        time = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry = {
            "time": time.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def configure(level: str, log_format: str) -> None:
    """Log to stderr at ``level`` in ``log_format`` ("text" or "json")."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])


class UndecodableMetadata(logging.Filter):
    """For gRPC's logger: a call whose metadata holds bytes that are not UTF-8 makes gRPC log
    an ERROR with the whole value and a traceback. Any stranger can send that, once a call
    (so a flood), and the value may be someone's token with a byte gone wrong: the record
    becomes one DEBUG line that shows neither (gRPC goes on and the call is answered)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Invalid encoding on "):
            return True
        record.msg, record.args = "a call's metadata held bytes that are not UTF-8 (not shown)", ()
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.exc_info = record.exc_text = None
        return logging.getLogger().isEnabledFor(logging.DEBUG)
