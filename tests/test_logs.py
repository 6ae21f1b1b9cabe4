"""The JSON log format as each kind of handler writes it: one record per line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from handler import logs


class RuntimeLikeHandler(logging.Handler):
    """Writes what the formatter returns as is, as awslambdaric's LambdaLoggerHandler does with
    its stdout sink under the runtime interface emulator."""

    def __init__(self) -> None:
        super().__init__()
        self.out = io.StringIO()

    def emit(self, record: logging.LogRecord) -> None:
        self.out.write(self.format(record))


@pytest.fixture
def root_handlers() -> Iterator[list[logging.Handler]]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers[:] = []
    try:
        yield root.handlers
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        logs.setup()


def _lines(text: str) -> list[dict[str, object]]:
    assert text.endswith("\n"), repr(text[-40:])
    return [json.loads(line) for line in text.splitlines()]


def test_the_runtimes_handler_gets_one_record_per_line(
    root_handlers: list[logging.Handler],
) -> None:
    runtime = RuntimeLikeHandler()
    root_handlers.append(runtime)
    logs.setup("INFO")
    log = logging.getLogger("handler.test")
    log.info("first", extra={"action": "reused"})
    log.warning("second")
    records = _lines(runtime.out.getvalue())
    assert [r["message"] for r in records] == ["first", "second"]
    assert records[0]["action"] == "reused"


def test_a_stream_handler_gets_no_blank_lines(root_handlers: list[logging.Handler]) -> None:
    out = io.StringIO()
    root_handlers.append(logging.StreamHandler(out))
    logs.setup("INFO")
    log = logging.getLogger("handler.test")
    log.info("first")
    log.info("second")
    text = out.getvalue()
    assert "\n\n" not in text
    assert [r["message"] for r in _lines(text)] == ["first", "second"]
