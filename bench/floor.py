"""The latency floor: bind each new pod the moment a watch shows it, in its own process.

    python -m bench.floor KUBECONFIG NAMESPACE[,NAMESPACE...] NODES [SCHEDULER]

The least any scheduler does: one watch event in, one binding out and then
its ``Scheduled`` Event, as every scheduler writes one, with no decision
(round robin over the nodes: ``bench-0`` .. ``bench-<NODES-1>`` when NODES is
a number, else the nodes the label selector NODES lists, by name). With
SCHEDULER, only the pods naming that ``schedulerName``. Run as its own
process, like the schedulers it is set beside, so that its
creation-to-bound and creation-to-done latencies at the throughput
scenario's steady rate are this control plane's floor on this machine, and
its pods/s on a scheduler_perf test case without constraints the most this
control plane accepts of a scheduler's writes: the Event's write loads the
apiserver as a scheduler's does, so the bindings meet the same apiserver.
Exits when killed.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import aiohttp

from bench.throughput import write_scheduled_event
from lasched.kube.binding import bind
from lasched.kube.client import ApiError, KubeClient


async def node_names(kc: KubeClient, nodes: str) -> list[str]:
    """``bench-0`` .. for a count, else the names of the nodes a label selector lists."""
    if nodes.isdigit():
        return [f"bench-{i}" for i in range(int(nodes))]
    listing = await kc.get("/api/v1/nodes", labelSelector=nodes)
    names = sorted(n["metadata"]["name"] for n in listing["items"])
    if not names:
        raise SystemExit(f"no node matches {nodes!r}")
    return names


async def bind_on_sight(
    kc: KubeClient, namespaces: list[str], nodes: list[str], scheduler: str | None = None
) -> None:
    selector = "spec.nodeName="
    if scheduler:
        selector += f",spec.schedulerName={scheduler}"
    sem = asyncio.Semaphore(64)
    tasks: set[asyncio.Task[None]] = set()
    seen: set[tuple[str, str]] = set()  # (namespace, uid): taken, whatever a relist shows
    count = 0

    async def one(ns: str, name: str, uid: str, node: str) -> None:
        async with sem:
            # A floor that lost a pod to one failed request would not be a floor: each
            # write is tried again, and every failure is said in the log.
            for attempt in range(1, 6):
                try:
                    if attempt == 1 or not await _bound(kc, ns, name):
                        await bind(kc, namespace=ns, name=name, uid=uid, node=node)
                    await write_scheduled_event(kc, ns, name, uid, node)
                    return
                except (ApiError, OSError, TimeoutError, aiohttp.ClientError) as e:
                    print(f"{ns}/{name}: attempt {attempt}: {type(e).__name__}: {e}", flush=True)
                    await asyncio.sleep(0.2 * attempt)

    def take(ns: str, meta: dict[str, Any]) -> None:
        nonlocal count
        if not meta.get("name") or (ns, meta["uid"]) in seen:
            return
        seen.add((ns, meta["uid"]))
        node = nodes[count % len(nodes)]
        count += 1
        task = asyncio.create_task(one(ns, meta["name"], meta["uid"], node))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def watch(ns: str, rv: str) -> None:
        while True:
            params: dict[str, str | int | bool] = {
                "watch": True,
                "resourceVersion": rv,
                "fieldSelector": selector,
            }
            try:
                async for ev in kc.stream(f"/api/v1/namespaces/{ns}/pods", params=params):
                    meta = (ev.get("object") or {}).get("metadata") or {}
                    if ev.get("type") == "ADDED":
                        take(ns, meta)
                    elif meta.get("resourceVersion"):
                        rv = meta["resourceVersion"]
                print(f"{ns}: watch ended; listing again", flush=True)
            except (ApiError, OSError, TimeoutError, aiohttp.ClientError) as e:
                print(f"{ns}: watch failed ({type(e).__name__}: {e}); listing again", flush=True)
                await asyncio.sleep(0.5)
            rv = await relist(ns)

    async def relist(ns: str) -> str:
        """The pods still unbound taken (a watch that ended may have missed some)."""
        listing = await kc.get(f"/api/v1/namespaces/{ns}/pods", fieldSelector=selector)
        for pod in listing["items"]:
            take(ns, pod["metadata"])
        return str(listing["metadata"]["resourceVersion"])

    versions = [
        (await kc.get(f"/api/v1/namespaces/{ns}/pods", limit=1))["metadata"]["resourceVersion"]
        for ns in namespaces
    ]
    # Each watch starts from its list's version, so no pod created from here on is missed.
    print("watching", flush=True)  # the caller waits for this line before creating pods
    await asyncio.gather(*(watch(ns, rv) for ns, rv in zip(namespaces, versions, strict=True)))


async def _bound(kc: KubeClient, ns: str, name: str) -> bool:
    """Whether an earlier attempt's binding landed (its answer may have been lost)."""
    pod = await kc.get(f"/api/v1/namespaces/{ns}/pods/{name}")
    return bool(pod["spec"].get("nodeName"))


async def main(kubeconfig: str, namespaces: str, nodes: str, scheduler: str | None) -> None:
    async with await KubeClient.from_kubeconfig(kubeconfig) as kc:
        await bind_on_sight(
            kc, [n for n in namespaces.split(",") if n], await node_names(kc, nodes), scheduler
        )


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        raise SystemExit(__doc__)
    kubeconfig, namespaces, nodes, *scheduler = sys.argv[1:]
    asyncio.run(main(kubeconfig, namespaces, nodes, scheduler[0] if scheduler else None))
