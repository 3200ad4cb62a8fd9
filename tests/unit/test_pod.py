"""PodInfo decodes every pod the apiserver accepts; free-text values become error texts."""

from __future__ import annotations

from typing import Any

import pytest

from lasched.model.pod import PodInfo
from tests.unit.factories import pod_json


def with_ports(*ports: dict[str, Any], init: bool = False) -> PodInfo:
    body = pod_json("p")
    container = {"name": "c", "ports": list(ports)}
    body["spec"]["initContainers" if init else "containers"] = [container]
    return PodInfo(body)


@pytest.mark.parametrize(
    ("port", "claimed"),
    [
        pytest.param({"containerPort": 80, "hostPort": 8080}, [("0.0.0.0", "TCP", 8080)], id="tcp"),
        pytest.param(
            {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"},
            [("10.0.0.1", "UDP", 53)],
            id="udp-with-host-ip",
        ),
        pytest.param({"containerPort": 80}, [], id="no-host-port"),
        pytest.param({"containerPort": 80, "hostPort": 0}, [], id="zero"),
        pytest.param({"hostPort": "8080"}, [("0.0.0.0", "TCP", 8080)], id="as-text"),
        pytest.param({"hostPort": "http"}, [], id="a-name"),
        pytest.param({"hostPort": "²"}, [], id="superscript"),
        pytest.param({"hostPort": 70_000}, [], id="out-of-range"),
        pytest.param({"hostPort": True}, [], id="boolean"),
        pytest.param({"hostPort": 80.5}, [], id="fraction"),
        pytest.param({"name": "metrics", "containerPort": 9090, "protocol": "SCTP"}, [], id="sctp"),
    ],
)
def test_host_ports_never_fail_decoding(port: dict[str, Any], claimed: list[Any]) -> None:
    """Only a host port number 1..65535 claims a port; anything else is left out."""
    assert list(with_ports(port).host_ports) == claimed


def test_init_container_host_ports_count() -> None:
    """Init containers' host ports are claimed too."""
    assert with_ports({"hostPort": 9000}, init=True).host_ports == (("0.0.0.0", "TCP", 9000),)


def test_minimal_pod_decodes_with_defaults() -> None:
    """A pod with only a name decodes with the apiserver's defaults."""
    pod = PodInfo({"metadata": {"name": "bare"}})
    assert (pod.key, pod.scheduler_name, pod.phase, pod.priority) == (
        "default/bare",
        "default-scheduler",
        "Pending",
        0,
    )
    assert (pod.latency, pod.group, pod.host_ports) == (None, None, ())


@pytest.mark.parametrize(
    ("labels", "annotations", "field", "text"),
    [
        ({}, {"lasched.io/prefer-low-rtt": "users-eu=²"}, "latency_error",
         "weight of users-eu must be an integer from 1 to 10, not '²'"),
        ({}, {"lasched.io/max-rtt": "users-eu=٣ms"}, "latency_error", "is not a duration"),
        ({"delay_edge-1": "inf"}, {}, "latency_error", "is not a finite number of milliseconds"),
        ({"delay_edge-1": "1e999"}, {}, "latency_error", "is not a finite number"),
        ({"lasched.io/pod-group": "g", "lasched.io/min-available": "²"}, {}, "group_error",
         "is not a positive integer"),
        ({}, {"pod-group": "g", "pod-group-size": "\u0661"}, "group_error",
         "is not a positive integer"),
        ({}, {"priority": "²"}, "priority_error", "is not an integer"),
        ({}, {"lasched.io/group-max-rtt": "1" * 29_999 + "x", "pod-group": "g"}, "latency_error",
         "value too long (30000 characters; at most 64)"),
    ],
    ids=["weight-superscript", "duration-arabic-indic", "delay-inf", "delay-overflow",
         "min-available-superscript", "group-size-arabic-indic", "priority-superscript",
         "group-max-rtt-huge"],
)  # fmt: skip
def test_malformed_values_become_error_texts(
    labels: dict[str, str], annotations: dict[str, str], field: str, text: str
) -> None:
    """Each malformed label or annotation value is an error text on the PodInfo."""
    body = pod_json("p")
    body["metadata"]["labels"] = labels
    body["metadata"]["annotations"] = annotations
    pod = PodInfo(body)
    error = getattr(pod, field)
    assert error is not None and text in error, error
