"""Quantities parse exactly as Kubernetes writes them."""

from __future__ import annotations

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
