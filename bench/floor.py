"""The latency floor: bind each new pod the moment a watch shows it, in its own process.

    python -m bench.floor KUBECONFIG NAMESPACE NODES

The least any scheduler does: one watch event in, one binding out and then
its ``Scheduled`` Event, as every scheduler writes one, with no decision
(round robin over ``bench-0`` .. ``bench-<NODES-1>``). Run as its own
process, like the schedulers it is set beside, so that its
creation-to-bound and creation-to-done latencies at the throughput
scenario's steady rate are this control plane's floor on this machine: the
Event's write loads the apiserver as a scheduler's does, so the bindings
meet the same apiserver. Exits when killed.
"""

from __future__ import annotations

import asyncio
import sys

from bench.throughput import write_scheduled_event
from lasched.kube.binding import bind
from lasched.kube.client import KubeClient


async def bind_on_sight(kc: KubeClient, ns: str, nodes: int) -> None:
    listing = await kc.get(f"/api/v1/namespaces/{ns}/pods", limit=1)
    params: dict[str, str | int | bool] = {
        "watch": True,
        "resourceVersion": listing["metadata"]["resourceVersion"],
        "fieldSelector": "spec.nodeName=",
    }
    sem = asyncio.Semaphore(64)
    tasks: set[asyncio.Task[None]] = set()
    count = 0

    async def one(name: str, uid: str, node: str) -> None:
        async with sem:
            await bind(kc, namespace=ns, name=name, uid=uid, node=node)
            await write_scheduled_event(kc, ns, name, uid, node)

    print("watching", flush=True)  # the caller waits for this line before creating pods
    async for ev in kc.stream(f"/api/v1/namespaces/{ns}/pods", params=params):
        meta = (ev.get("object") or {}).get("metadata") or {}
        if ev.get("type") != "ADDED" or not meta.get("name"):
            continue
        task = asyncio.create_task(one(meta["name"], meta["uid"], f"bench-{count % nodes}"))
        count += 1
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def main(kubeconfig: str, ns: str, nodes: int) -> None:
    async with await KubeClient.from_kubeconfig(kubeconfig) as kc:
        await bind_on_sight(kc, ns, nodes)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
