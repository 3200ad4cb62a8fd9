"""Quantities parse exactly as Kubernetes writes them."""

from __future__ import annotations

import math
import time

import pytest

from lasched.model import quantity


@pytest.mark.parametrize(
    ("text", "milli"),
    [
        pytest.param("1", 1000, id="whole-core"),
        pytest.param("100m", 100, id="millicores"),
        pytest.param("0.5", 500, id="decimal"),
        pytest.param("1.0001", 1001, id="rounds-up"),
        pytest.param("2e3", 2_000_000, id="exponent"),
        pytest.param("250000u", 250, id="micro"),
        pytest.param(".5", 500, id="leading-dot"),
    ],
)
def test_milli(text: str, milli: int) -> None:
    """CPU quantities become millicores, rounded up like MilliValue()."""
    assert quantity.milli(text) == milli


@pytest.mark.parametrize(
    ("text", "value"),
    [
        pytest.param("1Gi", 2**30, id="binary-suffix"),
        pytest.param("1G", 10**9, id="decimal-suffix"),
        pytest.param("512Mi", 512 * 2**20, id="mebibytes"),
        pytest.param("1.5Ki", 1536, id="fractional-binary"),
        pytest.param("1k", 1000, id="kilo"),
        pytest.param("100m", 1, id="milli-rounds-up"),
        pytest.param(3, 3, id="int"),
    ],
)
def test_value(text: str, value: int) -> None:
    """Memory and counts become base units, rounded up like Value()."""
    assert quantity.value(text) == value


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "1Gb", "--1", "1 Gi"])
def test_rejects_garbage(bad: str) -> None:
    """Anything that is not a quantity is an error naming the text."""
    with pytest.raises(quantity.QuantityError, match="not a Kubernetes quantity"):
        quantity.value(bad)


@pytest.mark.parametrize(
    "text",
    ["1" * 262_144 + "x", "1" * 65, "\u0661", "\uff15Gi", "1e65", "1e-65"],
    ids=["huge-adversarial", "too-long", "arabic-indic", "fullwidth", "exponent-high",
         "exponent-low"],
)  # fmt: skip
def test_refuses_what_the_apiserver_never_writes_quickly(text: str) -> None:
    """Long texts, non-ASCII digits and wild exponents are QuantityErrors, found fast."""
    start = time.perf_counter()
    with pytest.raises(quantity.QuantityError) as err:
        quantity.parse(text)
    assert time.perf_counter() - start < 0.5
    assert len(str(err.value)) < 200


@pytest.mark.parametrize("number", [math.inf, -math.inf, math.nan])
def test_refuses_numbers_that_are_not_finite(number: float) -> None:
    """A float quantity must be finite."""
    with pytest.raises(quantity.QuantityError, match="not a finite quantity"):
        quantity.parse(number)
