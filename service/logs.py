"""The service's own logs: structured JSON, one line per event, on stderr."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

# A WebSocket client may send its key as ?token= (browsers cannot set headers on a WebSocket); uvicorn
# logs a handshake's path with its query string. The auth layer strips the token from the request before
# uvicorn logs it; this is the second line of defence, for any log line that still carries one.
_TOKEN = re.compile(r"(token=)[^&\s\"']+|(Bearer\s+)\S+", re.IGNORECASE)


class JsonFormatter(logging.Formatter):
    def __init__(self, actor: str) -> None:
        super().__init__()
        self.actor = actor

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "actor": self.actor,
            "logger": record.name,
            "msg": _redact(record.getMessage()),
        }
        job_id = getattr(record, "job_id", None)
        if job_id is not None:
            line["job_id"] = job_id
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line)


def _redact(message: str) -> str:
    if "token=" not in message and "earer" not in message:
        return message
    return _TOKEN.sub(lambda m: (m[1] or m[2]) + "[redacted]", message)


def configure_logging(level: str, actor: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(actor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
