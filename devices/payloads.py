"""What a JSON document that crosses the hub may hold: command params and results, readings.

Each document is checked where it comes in against what every supported database stores
(PostgreSQL refuses NUL in text and in jsonb), what the hub's encoder takes back (orjson
refuses integers beyond 64 bits and nesting deeper than 254) and what a device's or browser's
parser keeps exactly (integers within ±2^53). Refused there, a bad document gets a clear
answer; let in, it would fail later, far from its cause: in a flush, a frame, the bridge's
command sweep.
"""
import math

MAX_DEPTH = 32
MAX_SAFE_INTEGER = 2**53 - 1


class UnsafeJson(ValueError):
    """A document the hub will not take; the message says where and why."""


class TooDeep(UnsafeJson):
    """A document nested deeper than the hub takes."""


def check_json(document, *, max_depth=MAX_DEPTH, max_integer=MAX_SAFE_INTEGER, max_float=math.inf):
    """Raises UnsafeJson for the first problem found: nesting deeper than `max_depth` objects
    and arrays, a NUL character in a string or key, a number that is not finite, an integer
    beyond ±`max_integer` or a float beyond ±`max_float`, or a value JSON has no type for.
    Iterative: a deep document cannot exhaust Python's stack here.

    (PostgreSQL's jsonb writes a float back without its exponent: 1e300 is read back as an
    integer of 301 digits. Documents stored as jsonb and sent on bound floats too.)"""
    stack = [(document, 0, "")]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, (dict, list)):
            if depth >= max_depth:
                raise TooDeep(f"{path or 'the document'}: nested deeper than {max_depth} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str) or "\x00" in key:
                        raise UnsafeJson(f"{path or 'the document'}: a key that is not text without NUL characters")
                    stack.append((item, depth + 1, f"{path}.{key[:40]}" if path else key[:40]))
            else:
                stack.extend((item, depth + 1, f"{path}[{index}]") for index, item in enumerate(value))
        elif isinstance(value, str):
            if "\x00" in value:
                raise UnsafeJson(f"{path or 'the document'}: text holds a NUL character (\\u0000)")
        elif value is None or isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if abs(value) > max_integer:
                raise UnsafeJson(f"{path or 'the document'}: an integer beyond ±{max_integer}")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise UnsafeJson(f"{path or 'the document'}: a number that is not finite")
            if abs(value) > max_float:
                raise UnsafeJson(f"{path or 'the document'}: a number beyond ±{max_float:.0f}")
        else:
            raise UnsafeJson(f"{path or 'the document'}: {type(value).__name__} is not a JSON value")
