"""Structured JSON logs that cannot carry key material or the ResponseURL's signature.

Redaction happens where every record is born (the log record factory), not in one handler:
botocore at DEBUG logs request and response bodies, which hold SecureString values, and a
filter on our own handler would miss records that other handlers (a test's, the Lambda
runtime's) receive.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|$)", re.DOTALL)
# base64 of "-----BEGIN" (at each of the three byte alignments), and what follows it.
_BASE64_PEM = re.compile(r"(LS0tLS1CRUdJT|0tLS0tQkVHSU|tLS0tLUJFR0lO)[A-Za-z0-9+/=\\n]*")
# A base64 PEM can also arrive with escaped newlines or split by a repr; any long base64
# run is no business of a log line either.
_LONG_BASE64 = re.compile(r"[A-Za-z0-9+/]{200,}={0,2}")
_URL_QUERY = re.compile(r"(https?://[^\s?\"'<>]+)\?[^\s\"'<>]*")
# botocore at DEBUG logs each request's headers and its SigV4 canonical request: the session
# token and the signature would let a log reader replay a GetParameters (and read the keys)
# for minutes. Header values are cut to the end of their quoted or line-delimited value.
_CREDENTIAL_HEADER = re.compile(
    r"(?i)((?:x-amz-security-token|authorization)[\"']?\s*[:=]\s*b?[\"']?)[^\"'\n]+"
)
_SIGNATURE = re.compile(r"(?i)(signature\s*[:=]\s*)[0-9a-f]{64}")

REDACTED = "[redacted]"

_context: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "docker_tls_log_context", default=None
)
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def redact(text: str) -> str:
    """``text`` without PEM blocks, base64 PEM, long base64 runs or URL query strings."""
    text = _PEM.sub(REDACTED, text)
    text = _BASE64_PEM.sub(REDACTED, text)
    text = _LONG_BASE64.sub(REDACTED, text)
    text = _CREDENTIAL_HEADER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _SIGNATURE.sub(lambda m: m.group(1) + REDACTED, text)
    return _URL_QUERY.sub(lambda m: f"{m.group(1)}?{REDACTED}", text)


def url_for_logs(url: str) -> str:
    """A URL with its query (the presigned signature) removed."""
    return url.split("?", 1)[0] + ("?" + REDACTED if "?" in url else "")


_base_factory = logging.getLogRecordFactory()


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a malformed %-format: keep the raw text, redacted
        message = str(record.msg)
    record.msg, record.args = redact(message), None
    return record


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the invocation's context and any ``extra`` fields.

    ``line_end`` is for handlers that write the formatted text as is: the Lambda runtime's own
    handler does (its default format ends in a newline), a ``StreamHandler`` adds its own.
    """

    def __init__(self, line_end: str = "") -> None:
        super().__init__()
        self.line_end = line_end

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **(_context.get() or {}),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return redact(json.dumps(entry, default=str)) + self.line_end


def bind(**fields: str) -> None:
    """Attach request fields (RequestId, LogicalResourceId, …) to every later log line."""
    _context.set({k: v for k, v in fields.items() if v})


def setup(level: str | None = None) -> None:
    """Install redaction and JSON formatting once; the level comes from ``LOG_LEVEL``."""
    if logging.getLogRecordFactory() is not _redacting_factory:
        logging.setLogRecordFactory(_redacting_factory)
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        # Under awslambdaric, the handler is the runtime's: without a newline of ours, its
        # local (stdout) sink runs the records together on one line.
        stream = isinstance(handler, logging.StreamHandler)
        handler.setFormatter(JsonFormatter(line_end="" if stream else "\n"))
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO").upper())
    for noisy in ("boto3", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
