"""`lasched dev up` leaves a cluster kubectl can use; `lasched dev down` removes it."""

from __future__ import annotations

import asyncio
import os
import sys

import orjson

from lasched.kube.client import KubeClient
from lasched_dev.devcluster.cluster import default_workdir
from lasched_dev.devcluster.processes import pid_alive


async def _cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lasched", "dev", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_dev_up_and_down() -> None:
    """Up: Ready kwok nodes behind the printed kubeconfig. Down: no process left."""
    name = f"cli-test-{os.getpid()}"
    workdir = default_workdir(name)
    pids: list[int] = []
    try:
        rc, out = await _cli("up", "--nodes", "3", "--name", name)
        assert rc == 0, out
        kubeconfig = workdir / "kubeconfig"
        assert f"kubectl --kubeconfig {kubeconfig} get nodes" in out
        pids += list(orjson.loads((workdir / "state.json").read_bytes())["pids"].values())
        async with await KubeClient.from_kubeconfig(str(kubeconfig)) as kc:
            listing = await kc.get("/api/v1/nodes")
        ready = [
            n["metadata"]["name"]
            for n in listing["items"]
            if any(
                c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]
            )
        ]
        assert sorted(ready) == ["node-0", "node-1", "node-2"]
    finally:
        rc, out = await _cli("down", "--name", name)
    assert rc == 0, out
    assert f"stopped cluster {name!r}" in out
    await asyncio.sleep(0.2)
    assert not any(pid_alive(p) for p in pids)
