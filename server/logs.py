"""How the server's log lines look: text for people, or one JSON object a line for
log pipelines (``--log-format json``)."""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections.abc import Callable

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


def demote(record: logging.LogRecord, message: str, *args: object) -> bool:
    """Make ``record`` one DEBUG line saying ``message`` (no traceback); a filter's answer:
    whether it is still shown (only when the server logs at DEBUG)."""
    record.msg, record.args = message, args
    record.levelno, record.levelname = logging.DEBUG, "DEBUG"
    record.exc_info = record.exc_text = None
    return logging.getLogger().isEnabledFor(logging.DEBUG)


class LinesPerMinute:
    """A budget of log lines for something a stranger can cause again and again: at most
    ``lines`` a minute, the rest counted so that the next line can say how many were not."""

    def __init__(self, lines: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._most, self._clock = lines, clock
        self._minute_began = -60.0  # the lines of the minute begun then
        self._lines = 0
        self._unlogged = 0  # not logged since the last line

    def allow(self) -> int | None:
        """None when this minute's lines are spent, else how many went unlogged since the last."""
        now = self._clock()
        if now - self._minute_began >= 60:
            self._minute_began, self._lines = now, 0
        if self._lines >= self._most:
            self._unlogged += 1
            return None
        self._lines += 1
        unlogged, self._unlogged = self._unlogged, 0
        return unlogged


class UndecodableMetadata(logging.Filter):
    """For gRPC's logger: a call whose metadata holds bytes that are not UTF-8 makes gRPC log
    an ERROR with the whole value and a traceback. Any stranger can send that, once a call
    (so a flood), and the value may be someone's token with a byte gone wrong: the record
    becomes one DEBUG line that shows neither (gRPC goes on and the call is answered)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Invalid encoding on "):
            return True
        return demote(record, "a call's metadata held bytes that are not UTF-8 (not shown)")
