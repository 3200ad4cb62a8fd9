"""NodePorts: a host port can be used once per node, per protocol and IP.

A wildcard host IP (0.0.0.0) conflicts with every IP, as in kube-scheduler's
``HostPortInfo``. A pod it rejected is worth another try when a node is
added, or a bound pod that held one of its ports is deleted."""

from __future__ import annotations

from typing import Any

from lasched.cache.cache import NodeInfo
from lasched.framework import events
from lasched.framework.events import (
    NODE_ADD,
    ActionType,
    ClusterEvent,
    ClusterEventWithHint,
    EventResource,
)
from lasched.framework.interface import SKIP, SUCCESS, Batchable, CycleState, Status, unschedulable
from lasched.model.pod import PodInfo

REASON = "node(s) didn't have free ports for the requested pod ports"
_WILDCARD = "0.0.0.0"


def conflicts(wanted: tuple[str, str, int], used: dict[tuple[str, str, int], int]) -> bool:
    ip, proto, port = wanted
    if (ip, proto, port) in used:
        return True
    if ip == _WILDCARD:
        return any(p == port and pr == proto for _, pr, p in used)
    return (_WILDCARD, proto, port) in used


def _port_freed(pod: PodInfo, old: Any, new: Any) -> events.QueueingHint:
    """A bound pod deleted that held a port the pod wants."""
    if not isinstance(old, PodInfo) or not old.bound or not old.host_ports:
        return events.SKIP
    held = dict.fromkeys(old.host_ports, 1)
    if any(conflicts(wanted, held) for wanted in pod.host_ports):
        return events.QUEUE
    return events.SKIP


class NodePorts(Batchable):
    name = "NodePorts"

    def events_to_register(self) -> list[ClusterEventWithHint]:
        return [
            ClusterEventWithHint(
                ClusterEvent(EventResource.ASSIGNED_POD, ActionType.DELETE), _port_freed
            ),
            ClusterEventWithHint(NODE_ADD),
        ]

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        return SUCCESS if pod.host_ports else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        for hp in pod.host_ports:
            if conflicts(hp, node.used_ports):
                return unschedulable(REASON)
        return SUCCESS
