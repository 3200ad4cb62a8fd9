"""SchedulingGates: a pod with ``spec.schedulingGates`` is not tried until they are removed.

kube-scheduler's PreEnqueue plugin of the same name. The apiserver refuses
to bind a gated pod, so trying one would only fail; it waits *gated*, outside
activeQ, and the update that removes its last gate enqueues it.
"""

from __future__ import annotations

from lasched.framework.interface import SUCCESS, Status, unschedulable
from lasched.model.pod import PodInfo


class SchedulingGates:
    name = "SchedulingGates"

    def pre_enqueue(self, pod: PodInfo) -> Status:
        if not pod.scheduling_gates:
            return SUCCESS
        return unschedulable(f"waiting for scheduling gates: {', '.join(pod.scheduling_gates)}")
