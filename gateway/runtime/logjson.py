"""Structured logs: one JSON object per line, fields passed as dicts (encoded once).

:func:`event` logs one line; :func:`each` logs one line per row (say, per message id
of a batch) as ONE log record, written in one go. :class:`JsonFormatter` (installed by
``valise serve``) turns a record into its lines; a plain message that is a JSON object
(older call sites) is merged in as before. Without the formatter a record reads as its
event name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

FIELDS = "valise_fields"
ROWS = "valise_rows"


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log the event ``name`` with ``fields``."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={FIELDS: {"event": name, **fields}})


def each(
    logger: logging.Logger,
    level: int,
    name: str,
    rows: Sequence[Mapping[str, Any]],
    **common: Any,
) -> None:
    """Log the event ``name`` once per row (each line: the common fields, then the row's)."""
    if rows and logger.isEnabledFor(level):
        logger.log(level, name, extra={FIELDS: {"event": name, **common}, ROWS: rows})


class JsonFormatter(logging.Formatter):
    """One JSON object per line; messages that are JSON objects are merged in."""

    def format(self, record: logging.LogRecord) -> str:
        base: dict[str, Any] = {
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, FIELDS, None)
        if fields is not None:
            base.update(fields)
        else:
            message = record.getMessage()
            try:
                extra = json.loads(message)
                base.update(extra if isinstance(extra, dict) else {"msg": message})
            except ValueError:
                base["msg"] = message
        rows = getattr(record, ROWS, None)
        if rows:
            return "\n".join(json.dumps({**base, **row}) for row in rows)
        return json.dumps(base)
