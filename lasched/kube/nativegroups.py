"""Kubernetes' own gang API as the server serves it: found once, watched, written back.

The API moved between releases (``v1alpha1`` Workloads on v1.35, ``v1alpha2`` and then
``v1beta1`` PodGroups; lasched.model.nativegroup has the shapes). :meth:`NativeGroups.run`
asks discovery which one this server serves (until discovery answers), and watches that
resource; on a server without any, it says so once in the log and returns, and lasched
schedules on (no pod there can name such a group: the server drops the fields).

Invariant: the Coscheduling plugin sees a native group's policy only through
:meth:`NativeGroups.lookup`, which never awaits (None until the informer has the object),
and the outcome of a round reaches a PodGroup's status as the condition kube-scheduler
writes (``PodGroupInitiallyScheduled`` on v1beta1, ``PodGroupScheduled`` on v1alpha2;
v1.35's Workload has no status), never turning a True condition back.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from lasched.kube import discovery
from lasched.kube.client import KubeClient
from lasched.kube.informers import Handler, Informer
from lasched.kube.statuswriter import StatusWriter
from lasched.model.nativegroup import (
    NATIVE_APIS,
    NativeApi,
    NativeGroup,
    Policy,
    choose_api,
    condition_patch,
)
from lasched.model.podgroup import GroupDecl

log = logging.getLogger(__name__)


class NativeGroups:
    """The served shape of the API, its informer, and the status writes."""

    def __init__(
        self,
        client: KubeClient,
        *,
        handler: Handler[NativeGroup],
        status: StatusWriter,
        idle_timeout: float,
    ) -> None:
        """``handler``: the informer's add/update/delete handler (PodGroupEvents)."""
        self._client = client
        self._handler = handler
        self._status = status
        self._idle = idle_timeout
        self.api: NativeApi | None = None
        self.informer: Informer[NativeGroup] | None = None

    async def run(self) -> None:
        """Find the served shape and watch it; returns at once on a server without one.

        Safe to cancel; a discovery error propagates (the supervisor asks again)."""
        if self.informer is None:
            served = {
                api.group_version: await discovery.resources(self._client, api.group_version)
                for api in NATIVE_APIS
            }
            api = choose_api(served)
            if api is None:
                shown = ", ".join(a.group_version for a in NATIVE_APIS)
                log.info(
                    "no Kubernetes gang API (%s) in this cluster; pods' spec.schedulingGroup "
                    "and spec.workloadRef are not read (pod groups declared by labels, "
                    "annotations and scheduler-plugins' PodGroup still are)",
                    shown,
                )
                return
            log.info("reading pod groups from %s %s", api.group_version, api.resource)
            self.api = api
            self.informer = Informer(
                self._client,
                path=api.path,
                decode=NativeGroup,
                handler=self._handler,
                name=f"{api.resource}.{api.version}",
                idle_timeout=self._idle,
            )
        await self.informer.run()

    def health(self) -> str | None:
        return self.informer.health() if self.informer is not None else None

    def lookup(self, decl: GroupDecl) -> Policy | None:
        """The policy of the group ``decl`` names; None while its object is unseen."""
        if self.informer is None or decl.ref is None:
            return None
        obj = self.informer.store.get(decl.ref)
        return obj.policy(decl.template) if obj is not None else None

    def outcome(self, decl: GroupDecl, *, scheduled: bool, message: str) -> None:
        """Record a round's outcome on the PodGroup, as the served API defines it."""
        api, inf = self.api, self.informer
        if api is None or inf is None or api.condition is None or decl.ref is None:
            return
        obj = inf.store.get(decl.ref)
        if obj is None:
            return
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = condition_patch(
            obj, condition=api.condition, scheduled=scheduled, message=message, now=now
        )
        if patch is None:
            return
        namespace, _, name = decl.ref.partition("/")
        path = f"/apis/{api.group_version}/namespaces/{namespace}/{api.resource}/{name}/status"
        self._status.podgroup_status(path, patch)
