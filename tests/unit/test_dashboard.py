"""The Grafana dashboard charts lasched's metrics, under their real names, and all of them."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
from prometheus_client import REGISTRY

import lasched.metrics  # noqa: F401  (registers the metrics)

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "lasched-dashboard.json"
SUFFIXES = ("_bucket", "_count", "_sum")


def lasched_metrics() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("lasched_"):
            # Counters are collected without their _total suffix.
            names.add(family.name + "_total" if family.type == "counter" else family.name)
    return names


def charted() -> set[str]:
    data = orjson.loads(DASHBOARD.read_bytes())
    exprs = [t["expr"] for p in data["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in data["templating"]["list"] if "definition" in v]
    found = set()
    for raw in re.findall(r"lasched_[a-z_]+", " ".join(exprs)):
        name = raw
        for suffix in SUFFIXES:
            name = name.removesuffix(suffix)
        found.add(name)
    return found


def test_every_charted_metric_exists() -> None:
    """No panel queries a metric lasched does not export (a typo charts nothing, silently)."""
    assert charted() - lasched_metrics() == set()


def test_every_metric_is_charted() -> None:
    """A new metric in lasched/metrics.py needs a panel."""
    assert lasched_metrics() - charted() == set()


def test_panels_have_unique_ids_and_a_datasource() -> None:
    """Grafana needs unique panel ids; every query goes to the chosen Prometheus."""
    data = orjson.loads(DASHBOARD.read_bytes())
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for p in data["panels"]:
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
