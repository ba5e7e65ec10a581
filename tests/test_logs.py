"""hub/logs.py: log records as JSON lines, with the fields a call passed in `extra`."""
import logging
import sys
from pathlib import Path

import orjson

from hub.logs import JsonFormatter


def formatted(message, *args, exc_info=None, **extra):
    record = logging.LogRecord("bridge", logging.ERROR, __file__, 1, message, args, exc_info)
    record.__dict__.update(extra)
    return orjson.loads(JsonFormatter().format(record))


def test_a_line_has_time_level_logger_message_and_the_calls_own_fields():
    line = formatted("could not store %d readings", 3, count=3, kind="transient")
    assert line.pop("time").endswith("+00:00")
    assert line == {"level": "ERROR", "logger": "bridge", "message": "could not store 3 readings",
                    "count": 3, "kind": "transient"}


def test_a_traceback_is_one_field_and_values_json_lacks_become_text():
    try:
        raise ValueError("bad")
    except ValueError:
        line = formatted("task %s crashed", "flush", exc_info=sys.exc_info(), task="flush", path=Path("/var/telehub"))
    assert line["task"] == "flush" and line["message"] == "task flush crashed"
    assert line["exception"].startswith("Traceback") and "ValueError: bad" in line["exception"]
    assert line["path"] == "/var/telehub"
