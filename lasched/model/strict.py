"""Strict readers of numbers written as text, and how messages quote a value.

Labels, annotations and files are free text, and Python's own readers accept
more than a user means: ``int()`` and ``float()`` take the decimal digits of
every script (Arabic-Indic, fullwidth) and underscores, ``float()`` takes
'inf', 'nan' and exponents that overflow to infinity, and ``str.isdigit()``
admits '²', which ``int()`` then refuses with a ValueError. The readers here
take ASCII only, look at each character a bounded number of times, and
refuse a text longer than :data:`MAX_NUMBER_CHARS` before reading it: their
time is linear in the input, and they never raise. A text that is not the number asked for gives
None; the caller names the field in its message.

Every message quotes a value with :func:`shown`, which cuts it to
:data:`SHOWN_CHARS` characters, so a 256 KiB annotation never makes a 256 KiB
Event.
"""

from __future__ import annotations

import orjson

MAX_NUMBER_CHARS = 64
"""A number or a duration longer than this is an error, whatever it holds."""

SHOWN_CHARS = 64
"""A message shows at most this many characters of a value."""

MAX_RTT_MS = 60_000.0
"""RTTs and RTT limits are within 0..60 s: a longer round trip is an outage, not a latency."""

MAX_NAME_CHARS = 253
"""A place or group name is at most as long as a Kubernetes object name."""


def shown(value: str, *, quote: str = '"', length: bool = True) -> str:
    """``value`` quoted for a message; a longer one is cut, marked ``…`` and, with
    ``length``, followed by its length: ``"1111…" (30000 characters)``."""
    if len(value) <= SHOWN_CHARS:
        return f"{quote}{value}{quote}"
    cut = f"{quote}{value[:SHOWN_CHARS]}…{quote}"
    return f"{cut} ({len(value)} characters)" if length else cut


def shown_json(value: object) -> str:
    """A decoded JSON value for a message: a string quoted and cut as :func:`shown`
    does, anything else as compact JSON cut the same way. Never raises: ``repr``
    of a list nested a thousand deep would (RecursionError)."""
    if isinstance(value, str):
        return shown(value, quote="'")
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError: nested too deep, or not a JSON value
        try:
            text = repr(value)
        except RecursionError:
            return f"a {type(value).__name__} nested too deeply to show"
    return shown(text, quote="")


def too_long(value: str, limit: int = MAX_NUMBER_CHARS) -> str | None:
    """``value too long (N characters; at most limit)`` when it is, else None."""
    if len(value) > limit:
        return f"value too long ({len(value)} characters; at most {limit})"
    return None


def integer(text: str) -> int | None:
    """``[+-]?[0-9]+`` with blanks around it, else None."""
    if len(text) > MAX_NUMBER_CHARS:
        return None
    s = text.strip()
    digits = s[1:] if s[:1] in ("+", "-") else s
    # isdigit() alone admits '²' and every script's digits; with isascii() it means 0-9.
    if not (digits.isascii() and digits.isdigit()):
        return None
    return int(s)


_NON_FINITE = frozenset({"inf", "infinity", "nan"})


def spells_non_finite(text: str) -> bool:
    """``inf``, ``-Infinity``, ``NaN``: text that ``float()`` reads as a non-finite number."""
    return len(text) <= MAX_NUMBER_CHARS and text.strip().lstrip("+-").lower() in _NON_FINITE


def decimal(text: str, *, signed: bool = False, exponent: bool = False) -> float | None:
    """A decimal number with blanks around it, else None.

    ``5``, ``5.``, ``5.25`` or ``.25``; a sign first if ``signed``; ``e3``,
    ``E-3`` after it if ``exponent``. With an exponent the result may be
    infinite (``1e999``): the caller checks the range, and so says "not
    finite" rather than "not a number".
    """
    if len(text) > MAX_NUMBER_CHARS:
        return None
    s = text.strip()
    if not s.isascii():
        return None
    body = s[1:] if signed and s[:1] in ("+", "-") else s
    mantissa, power = body, ""
    if exponent:
        mantissa, marker, power = body.replace("E", "e").partition("e")
        if marker:
            power = power[1:] if power[:1] in ("+", "-") else power
            if not power.isdigit():
                return None
    whole, _, fraction = mantissa.partition(".")
    if not (whole or fraction):
        return None
    if (whole and not whole.isdigit()) or (fraction and not fraction.isdigit()):
        return None
    return float(s)
