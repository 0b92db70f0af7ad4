"""Logging with loguru: the seed's text lines, or one JSON object per line."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from loguru import logger

TEXT_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level} - {message}"


def _json_line(record: Any) -> str:
    payload = {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "message": record["message"],
        "logger": record["name"],
    }
    if record["exception"] is not None:
        payload["exception"] = str(record["exception"].value)
    record["extra"]["_json"] = json.dumps(payload)
    return "{extra[_json]}\n"


def configure(level: str = "INFO", fmt: str = "text", sink: TextIO | None = None) -> int:
    """Send this package's log lines to stderr (or sink) in the chosen format; returns the sink id.

    Only the CLI calls this: a server that imports the package keeps its own loguru setup.
    """
    logger.remove()
    target = sink if sink is not None else sys.stderr
    if fmt == "json":
        return logger.add(
            target, level=level, format=_json_line, colorize=False, backtrace=False, diagnose=False
        )
    # diagnose=False: a traceback must never print local values such as a database URL.
    return logger.add(
        target, level=level, format=TEXT_FORMAT, colorize=False, backtrace=False, diagnose=False
    )
