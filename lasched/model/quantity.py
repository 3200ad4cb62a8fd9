"""Kubernetes resource quantities ("100m", "1.5Gi", "2e3") as integers.

CPU is kept in millicores and everything else in base units, both rounded up,
as kube-scheduler does with ``MilliValue()`` and ``Value()``.

The apiserver writes every quantity in canonical form: at most 2^63-1 and
three decimal places, so a short string. A text longer than
:data:`MAX_CHARS` or with an exponent beyond :data:`MAX_EXPONENT` is refused
(``QuantityError``) before any arithmetic, so that no input costs more than
a few microseconds.
"""

from __future__ import annotations

import functools
import math
import re
from fractions import Fraction

from lasched.model.strict import shown

_SUFFIX: dict[str, Fraction] = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}

MAX_CHARS = 64
MAX_EXPONENT = 64

# Used with fullmatch. The integer digits are followed by a mandatory "." or
# by something that is not a digit, so a failing match backtracks at most
# once per character (the old ``\d+\.?\d*`` split a run of digits in every
# possible way: quadratic).
_QUANTITY = re.compile(
    r"(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<exp>[eE][+-]?[0-9]+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)"
)


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse(text: str | int | float) -> Fraction:
    """The exact value of a quantity."""
    if isinstance(text, int):
        return Fraction(text)
    if isinstance(text, float):
        if not math.isfinite(text):
            raise QuantityError(f"{text!r} is not a finite quantity")
        return Fraction(text)
    if len(text) > MAX_CHARS:
        quoted = shown(text, quote="'")
        raise QuantityError(f"{quoted} is not a Kubernetes quantity (longer than {MAX_CHARS})")
    m = _QUANTITY.fullmatch(text.strip())
    if not m:
        raise QuantityError(f"{text!r} is not a Kubernetes quantity")
    value = Fraction(m["num"])
    if m["exp"]:
        exponent = int(m["exp"][1:])
        if abs(exponent) > MAX_EXPONENT:
            raise QuantityError(f"{text!r} has an exponent beyond {MAX_EXPONENT}")
        return value * Fraction(10) ** exponent
    return value * _SUFFIX[m["suffix"] or ""]


# Clusters repeat a handful of quantity strings ("100m", "1Gi") across
# thousands of pods: decoding them once each keeps informer decoding cheap.
@functools.lru_cache(maxsize=4096)
def milli(text: str | int | float) -> int:
    """Thousandths of the quantity, rounded up (CPU in millicores)."""
    return math.ceil(parse(text) * 1000)


@functools.lru_cache(maxsize=4096)
def value(text: str | int | float) -> int:
    """The quantity in base units, rounded up (bytes, counts)."""
    return math.ceil(parse(text))
