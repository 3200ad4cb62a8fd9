"""SchedulingGates: a pod with ``spec.schedulingGates`` is not tried until they are removed.

kube-scheduler's PreEnqueue plugin of the same name. The apiserver refuses
to bind a gated pod, so trying one would only fail; it waits *gated*, outside
activeQ, and the update that removes its last gate enqueues it: a pod's own
update always runs PreEnqueue again, so no cluster event can help it.
"""

from __future__ import annotations

from lasched.framework.events import ClusterEventWithHint
from lasched.framework.interface import SUCCESS, Status, unschedulable
from lasched.model.pod import PodInfo


class SchedulingGates:
    name = "SchedulingGates"

    def events_to_register(self) -> list[ClusterEventWithHint]:
        """None: only the pod's own update (which removes gates) opens its gate."""
        return []

    def pre_enqueue(self, pod: PodInfo) -> Status:
        if not pod.scheduling_gates:
            return SUCCESS
        return unschedulable(f"waiting for scheduling gates: {', '.join(pod.scheduling_gates)}")
