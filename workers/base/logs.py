"""Structured JSON logs, one object a line, without patient data.

Log calls pass counts, ids, file names, rule ids and topic coordinates only; record values never
reach a logger (the validator's reasons carry field and rule, not values). The formatter also
drops any `extra` key named like a patient field as a second line of defence.

A failure logged with `exc_info` carries its traceback as frames ("file:line function") and the
exception's type, never the exception's message: a message may quote the value that broke a
parser (a ValueError naming an NHS number), and the standard formatter would print it. Only the
messages of exception types that describe infrastructure (Kafka, timeouts, connections) are kept.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import orjson
from aiokafka.errors import KafkaError

from schemas.columns import PATIENT_FIELDS

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_FORBIDDEN = {f.lower() for f in PATIENT_FIELDS} | PATIENT_FIELDS | {"record", "value", "content"}

# Exception types whose messages describe the infrastructure (a broker, a socket), never a record.
SAFE_MESSAGES: Final[tuple[type[BaseException], ...]] = (KafkaError, TimeoutError, ConnectionError)
MAX_FRAMES: Final = 30
_ROOT: Final = str(Path(__file__).resolve().parents[2]) + "/"
MAX_CHAIN: Final = 5


def _short(path: str) -> str:
    """A frame's file as a reader looks it up: relative to the repository or to site-packages."""
    if path.startswith(_ROOT):
        return path[len(_ROOT) :]
    _, marker, rest = path.rpartition("/site-packages/")
    return rest if marker else path


def _frames(tb: TracebackType | None) -> list[str]:
    """The traceback as "file:line function", innermost last."""
    return [f"{_short(f.filename)}:{f.lineno} {f.name}" for f in traceback.extract_tb(tb)[-MAX_FRAMES:]]


def describe_exception(exc: BaseException) -> dict[str, Any]:
    """An exception for a log line: type, frames and (for SAFE_MESSAGES types only) the message,
    then the same for its causes (`raise ... from`, or raised while handling another)."""
    out: dict[str, Any] = {"exc": type(exc).__name__, "frames": _frames(exc.__traceback__)}
    if isinstance(exc, SAFE_MESSAGES):
        out["exc_message"] = str(exc)[:300]
    causes: list[dict[str, Any]] = []
    seen = {id(exc)}
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen and len(causes) < MAX_CHAIN:
        seen.add(id(cause))
        entry: dict[str, Any] = {"exc": type(cause).__name__, "frames": _frames(cause.__traceback__)}
        if isinstance(cause, SAFE_MESSAGES):
            entry["exc_message"] = str(cause)[:300]
        causes.append(entry)
        cause = cause.__cause__ or cause.__context__
    if causes:
        out["caused_by"] = causes
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in _FORBIDDEN and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            out.update(describe_exception(record.exc_info[1]))
        return orjson.dumps(out, default=str).decode()


def configure(worker: str, level: str = "INFO") -> logging.Logger:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    return logging.getLogger(f"vaxflow.{worker}")
