"""Structured JSON logs, one object a line, without patient data.

Log calls pass counts, ids, file names, rule ids and topic coordinates only; record values never
reach a logger (the validator's reasons carry field and rule, not values). The formatter also
drops any `extra` key named like a patient field as a second line of defence.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from schemas.columns import PATIENT_FIELDS

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_FORBIDDEN = {f.lower() for f in PATIENT_FIELDS} | PATIENT_FIELDS | {"record", "value", "content"}


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
        if record.exc_info and record.exc_info[0] is not None:
            out["exc"] = record.exc_info[0].__name__
        return orjson.dumps(out, default=str).decode()


def configure(worker: str, level: str = "INFO") -> logging.Logger:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    return logging.getLogger(f"vaxflow.{worker}")
