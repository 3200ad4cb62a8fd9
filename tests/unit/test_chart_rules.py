"""The chart's PrometheusRule: valid PromQL, only metrics and labels lasched exports, and
the same alerts as docs/operations.md.

The chart is rendered with the helm that ``lasched dev build`` builds (found in its
cache, or built once). Expressions are parsed with a PromQL parser; every selector
must name a metric lasched/metrics.py defines (with the suffixes its type exposes)
or one of the few kube-state-metrics and Prometheus series the alerts name, and
every label a selector matches or an aggregation groups by must be one of that
metric's labels or a scrape target's.
"""

from __future__ import annotations

import asyncio
import functools
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser as promql
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

import lasched.metrics
from lasched_dev.devcluster import binaries

ROOT = Path(__file__).parents[2]
CHART = ROOT / "deploy" / "charts" / "lasched"
OPERATIONS = ROOT / "docs" / "operations.md"

# Labels Prometheus attaches to every scraped series (ServiceMonitor targets).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}
# Series the alerts read from elsewhere: name -> its labels.
EXTERNAL = {
    "up": set(),
    "kube_node_info": {"node"},
    "kube_deployment_status_replicas_available": {"deployment"},
}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}

Rule = dict[str, Any]


def exported() -> dict[str, set[str]]:
    """Every series name lasched exposes -> its labels (``le`` for buckets)."""
    series: dict[str, set[str]] = {}
    for metric in vars(lasched.metrics).values():
        if isinstance(metric, MetricWrapperBase):
            labels = set(metric._labelnames)
            for suffix in SUFFIXES[str(metric._type)]:
                series[metric._name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return series


@pytest.fixture(scope="module")
def helm() -> Path:
    return asyncio.run(binaries.ensure(["helm"]))["helm"]


def render(helm: Path, *values: str) -> list[Rule]:
    """The PrometheusRule's rules, for release lasched in lasched-system."""
    sets = [a for v in ("prometheusRule.enabled=true", *values) for a in ("--set", v)]
    out = subprocess.run(
        [str(helm), "template", "lasched", str(CHART), "--namespace", "lasched-system", *sets,
         "--show-only", "templates/prometheusrule.yaml"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    (rule,) = [d for d in yaml.safe_load_all(out) if d]
    assert rule["kind"] == "PrometheusRule"
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    (group,) = rule["spec"]["groups"]
    rules: list[Rule] = group["rules"]
    return rules


def selectors(expr: str) -> Iterator[tuple[str, set[str]]]:
    """(metric name, label names) of every selector in ``expr``, and each aggregation's
    grouping labels under the names of the metrics it aggregates."""
    found: list[tuple[str, set[str]]] = []
    groupings: list[tuple[set[str], Any]] = []

    def visit(node: Any) -> None:
        _selector(node, found)
        if isinstance(node, promql.AggregateExpr) and node.modifier is not None:
            groupings.append((set(node.modifier.labels), node.expr))

    promql.walk(promql.parse(expr), visit)
    for labels, inner in groupings:
        inside: list[tuple[str, set[str]]] = []
        promql.walk(inner, functools.partial(_selector, found=inside))
        found.extend((name, labels) for name, _ in inside)
    yield from found


def _selector(node: Any, found: list[tuple[str, set[str]]]) -> None:
    if isinstance(node, promql.VectorSelector):
        assert node.name, f"a selector without a metric name: {node}"
        found.append((str(node.name), {m.name for m in node.matchers.matchers}))


VARIANTS = {
    "defaults": (),
    "extender": ("extender.enabled=true",),
    "one-replica": (
        "scheduler.replicaCount=1", "scheduler.leaderElection.leaderElect=false",
        "agent.fanOut=false",
    ),
    "no-kube-state-metrics": ("prometheusRule.kubeStateMetrics=false", "agent.enabled=false"),
}  # fmt: skip


@pytest.mark.parametrize("values", VARIANTS.values(), ids=VARIANTS.keys())
def test_every_expression_reads_what_lasched_exports(helm: Path, values: tuple[str, ...]) -> None:
    """A typo in a metric or label name makes an alert that never fires, silently."""
    known = exported() | EXTERNAL
    rules = render(helm, *values)
    assert rules
    for rule in rules:
        for name, labels in selectors(rule["expr"]):
            assert name in known, f"{rule['alert']}: no metric {name}"
            allowed = known[name] | TARGET_LABELS
            assert labels <= allowed, f"{rule['alert']}: {name} has no label {labels - allowed}"
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_the_chart_lints_with_the_rule(helm: Path) -> None:
    out = subprocess.run(
        [str(helm), "lint", "--strict", str(CHART), "--namespace", "lasched-system",
         "--set", "prometheusRule.enabled=true", "--set", "extender.enabled=true"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_off_by_default(helm: Path) -> None:
    out = subprocess.run(
        [str(helm), "template", "lasched", str(CHART), "--namespace", "lasched-system"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert "PrometheusRule" not in {d["kind"] for d in yaml.safe_load_all(out) if d}


def documented() -> list[Rule]:
    """The rule file in docs/operations.md's Alerts section."""
    text = OPERATIONS.read_text()
    section = text[text.index("## Alerts") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block, "docs/operations.md's Alerts section has no YAML rule file"
    (group,) = yaml.safe_load(block.group(1))["groups"]
    rules: list[Rule] = group["rules"]
    return rules


def test_the_chart_ships_the_documented_alerts(helm: Path) -> None:
    """The docs' rule file and the chart's (release lasched, defaults plus the extender)
    are the same rules."""
    chart = {r["alert"]: r for r in render(helm, "extender.enabled=true")}
    docs = {r["alert"]: r for r in documented()}
    assert chart.keys() == docs.keys()
    for name, rule in docs.items():
        for key in ("expr", "for", "labels"):
            assert " ".join(str(rule.get(key)).split()) == " ".join(
                str(chart[name].get(key)).split()
            ), f"{name}: {key} differs between docs/operations.md and the chart"


def test_the_parser_sees_every_selector() -> None:
    """The check above is only as good as the walk: it finds selectors inside
    subqueries, binary operands, functions, and names grouping labels."""
    pairs = list(selectors('sum by (reason) (rate(a_total{x="1"}[5m])) / deriv(max(b)[30m:1m])'))
    assert ("a_total", {"x"}) in pairs
    assert ("a_total", {"reason"}) in pairs
    assert ("b", set()) in pairs
