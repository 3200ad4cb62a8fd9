"""Kubernetes resource quantities ("100m", "1.5Gi", "2e3") as integers.

CPU is kept in millicores and everything else in base units, both rounded up,
as kube-scheduler does with ``MilliValue()`` and ``Value()``.
"""

from __future__ import annotations

import functools
import math
import re
from fractions import Fraction

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

_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:\d+\.?\d*|\.\d+))"
    r"(?:(?P<exp>[eE][+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$"
)


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse(text: str | int | float) -> Fraction:
    """The exact value of a quantity."""
    if isinstance(text, int | float):
        return Fraction(text)
    m = _QUANTITY.match(text.strip())
    if not m:
        raise QuantityError(f"{text!r} is not a Kubernetes quantity")
    value = Fraction(m["num"])
    if m["exp"]:
        return value * Fraction(10) ** int(m["exp"][1:])
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
