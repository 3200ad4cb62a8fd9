"""NodePorts: a host port can be used once per node, per protocol and IP.

A wildcard host IP (0.0.0.0) conflicts with every IP, as in kube-scheduler's
``HostPortInfo``."""

from __future__ import annotations

from lasched.cache.cache import NodeInfo
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


class NodePorts(Batchable):
    name = "NodePorts"

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        return SUCCESS if pod.host_ports else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        for hp in pod.host_ports:
            if conflicts(hp, node.used_ports):
                return unschedulable(REASON)
        return SUCCESS
