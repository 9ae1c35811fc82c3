from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from core.logs import configure_logging, get_logger


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def test_json_lines_carry_context_and_foreign_records(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="INFO", json=True)
    with structlog.contextvars.bound_contextvars(request_id="r-1"):
        get_logger("test").info("thing.happened", size=3)
        logging.getLogger("some.library").warning("plain %s", "message")
    get_logger("test").debug("hidden")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["event"] == "thing.happened"
    assert lines[0]["request_id"] == "r-1"
    assert lines[0]["size"] == 3
    assert lines[0]["level"] == "info"
    assert lines[1]["event"] == "plain message"
    assert lines[1]["logger"] == "some.library"
    assert len(lines) == 2


def test_console_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="DEBUG", json=False)
    get_logger("test").debug("debugging", x=1)
    err = capsys.readouterr().err
    assert "debugging" in err
    assert "x=1" in err
