"""JSON log lines that carry object keys only as hashes (``key_ref``): keys hold person names,
which are personal data, and neither names nor image bytes are ever logged."""

from __future__ import annotations

import hashlib
import json
import logging
import time


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``fields``.
    Exceptions are logged by type only (their messages may name people)."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info and record.exc_info[0] is not None:
            payload["error_type"] = record.exc_info[0].__name__
        return json.dumps(payload, default=str)


def get_logger(name: str, level: str = "INFO") -> logging.Logger:
    logger = logging.getLogger(name)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
    return logger


def log(logger: logging.Logger, message: str, **fields) -> None:
    logger.info(message, extra={"fields": fields})


def key_ref(key: str) -> str:
    """A stable, non-reversible reference to an object key for logs."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]
