"""Log lines as JSON, one object a line, for log collectors (HUB_LOG_FORMAT=json).

Each line has time (UTC, ISO 8601), level, logger and message, the fields a call passed in
`extra` (device, reason, count, task...), and the traceback as `exception` when there is one.
"""
import logging
from datetime import datetime, timezone

import orjson

# What every LogRecord has: anything else on a record came in through `extra`.
_RECORD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record):
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and name not in line:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
