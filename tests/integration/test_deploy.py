"""Deployment: the Helm chart lints and renders what its values say, the committed plain
manifest is its rendering, the real apiserver accepts every object it renders, its pods
meet the Pod Security levels docs/deploy.md states, and the Dockerfile's install steps
give working images.

helm is built from the Go module proxy like the control-plane binaries
(``lasched dev build``). There is no Docker engine: the image check runs each
target's build stages (COPY from the filtered context, then RUN) in a temporary
directory, with the machine's Python in place of the image's, and the pip cache.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from lasched import settings
from lasched.kube.client import ApiError, KubeClient
from lasched_agent import config as agent_config
from lasched_dev.devcluster import binaries
from lasched_dev.devcluster.apply import apply
from lasched_dev.devcluster.cluster import ensure_namespace
from tests.unit.test_dockerfile import copy_args, env_pairs, ignore_rules, ignored, parse

ROOT = Path(__file__).parents[2]
CHART = ROOT / "deploy" / "charts" / "lasched"
MANIFEST = ROOT / "deploy" / "manifests" / "lasched.yaml"
NAMESPACE = "lasched-system"

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
async def helm() -> Path:
    return (await binaries.ensure(["helm"]))["helm"]


def _set_args(values: Sequence[str]) -> list[str]:
    return [arg for v in values for arg in ("--set", v)]


def render(
    helm: Path,
    *values: str,
    release: str = "lasched",
    namespace: str = NAMESPACE,
) -> list[Manifest]:
    """``helm template`` with a Namespace object, as the plain manifest is rendered."""
    out = subprocess.run(
        [str(helm), "template", release, str(CHART), "--namespace", namespace,
         "--set", "createNamespace=true", *_set_args(values)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def find(objs: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    hits = [o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(hits) == 1, f"{len(hits)} {kind} {name or ''} rendered"
    return hits[0]


def kinds(objs: list[Manifest]) -> set[str]:
    return {o["kind"] for o in objs}


def pod_spec(objs: list[Manifest], kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = find(objs, kind)["spec"]["template"]["spec"]
    return spec


def config_of(objs: list[Manifest]) -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load(find(objs, "ConfigMap")["data"]["config.yaml"])
    return cfg


def cluster_rules(objs: list[Manifest]) -> set[tuple[str, str, str]]:
    """(group, resource, verb) triples the ClusterRole grants."""
    return {
        (g, r, v)
        for rule in find(objs, "ClusterRole")["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


# ---- helm lint and helm template ---------------------------------------------------

VARIANTS: dict[str, tuple[str, ...]] = {
    "defaults": (),
    "raw-sockets": ("agent.rawSockets=true",),
    "host-network": ("agent.hostNetwork=true",),
    "service-monitor": ("serviceMonitor.enabled=true",),
    "no-agent": ("agent.enabled=false",),
    "no-fan-out": ("agent.fanOut=false",),
    "one-replica": ("scheduler.replicaCount=1",),
    "no-preemption": ("preemption.enabled=false", "rbac.coreEvents=false"),
    "extender": ("extender.enabled=true",),
    "remediation": ("remediation.enabled=true", "remediation.gracePeriodSeconds=30"),
    "remediation-dry-run": ("remediation.enabled=true", "remediation.dryRun=true"),
    "topology-labels": ("topology.enabled=true", "topology.writeLabels=true"),
    "topology-no-labels": ("topology.enabled=true", "topology.holdSeconds=30"),
    "two-profiles": ("profiles[0].schedulerName=lasched", "profiles[1].schedulerName=edge"),
    "numa": ("agent.numa.report=true", "agent.numa.topologyManagerPolicy=single-numa-node"),
}


@pytest.mark.parametrize("values", VARIANTS.values(), ids=VARIANTS.keys())
def test_chart_lints(helm: Path, values: tuple[str, ...]) -> None:
    """``helm lint --strict`` passes with the defaults and with each toggle."""
    out = subprocess.run(
        [str(helm), "lint", "--strict", str(CHART), "--namespace", NAMESPACE,
         *_set_args(values)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_committed_manifest_is_the_chart_rendering(helm: Path) -> None:
    """deploy/manifests/lasched.yaml is byte for byte the output of the command in its
    header (``make deploy-render`` writes it)."""
    text = MANIFEST.read_text()
    header, body = text[: text.index("---\n")], text[text.index("---\n") :]
    (command,) = [
        line.removeprefix("#").strip()
        for line in header.splitlines()
        if line.removeprefix("#").strip().startswith("helm template ")
    ]
    argv = shlex.split(command)
    out = subprocess.run(
        [str(helm), *argv[1:]], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert body == out.stdout, "the manifest is stale: run `make deploy-render`"


def test_default_rendering(helm: Path) -> None:
    """Defaults: two restricted scheduler replicas with probes, config, PDB and a
    NetworkPolicy; an agent on every node with no API token and a projected one."""
    objs = render(helm)
    assert kinds(objs) == {
        "Namespace", "NetworkPolicy", "PodDisruptionBudget", "ServiceAccount", "ConfigMap",
        "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "DaemonSet",
        "Deployment",
    }  # fmt: skip
    ns = find(objs, "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    deploy = find(objs, "Deployment", "lasched")
    assert deploy["spec"]["replicas"] == 2
    spec = pod_spec(objs, "Deployment")
    assert spec["serviceAccountName"] == "lasched"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = spec["containers"]
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert c["args"] == ["--config=/etc/lasched/config.yaml"]
    assert spec["volumes"][0]["configMap"]["name"] == "lasched-config"

    cfg = config_of(objs)
    parsed = settings.parse(cfg)
    assert parsed.leader_election.resource_namespace == NAMESPACE
    assert parsed.leader_election.resource_name == "lasched"
    assert parsed.latency.agent_service_accounts == (f"{NAMESPACE}/lasched-agent",)
    assert parsed.server.port == 10271
    assert find(objs, "Role")["rules"][1]["resourceNames"] == ["lasched"]

    assert find(objs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    service = find(objs, "Service", "lasched")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 10271, "targetPort": "http", "protocol": "TCP"}
    ]

    agent = pod_spec(objs, "DaemonSet")
    assert agent["serviceAccountName"] == "lasched-agent"
    assert agent["automountServiceAccountToken"] is False
    assert "hostNetwork" not in agent
    assert agent["securityContext"]["sysctls"] == [
        {"name": "net.ipv4.ping_group_range", "value": "65532 65532"}
    ]
    assert agent["tolerations"] == [{"operator": "Exists"}]
    (a,) = agent["containers"]
    assert "add" not in a["securityContext"]["capabilities"]
    env = {e["name"]: e for e in a["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["LASCHED_SCHEDULER_URL"]["value"] == (
        "ws://lasched-replicas.lasched-system.svc:10271/agents/v1"
    )
    assert a["volumeMounts"] == [
        {"name": "token", "mountPath": "/var/run/secrets/lasched", "readOnly": True}
    ]
    (source,) = agent["volumes"][0]["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "lasched"
    assert source["serviceAccountToken"]["path"] == "token"

    netpol = find(objs, "NetworkPolicy")
    (rule,) = netpol["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": a_labels(objs)}},
    ]


def test_agents_reach_every_replica_through_a_headless_service(helm: Path) -> None:
    """By default agents fan out to the ready replicas the headless Service lists, on the
    container's port, scheduler.port (pod IPs take no Service port mapping)."""
    objs = render(helm, "scheduler.port=10300")
    replicas = find(objs, "Service", "lasched-replicas")
    assert replicas["spec"]["clusterIP"] == "None"
    assert replicas["spec"]["publishNotReadyAddresses"] is False
    deploy = find(objs, "Deployment", "lasched")
    assert replicas["spec"]["selector"] == deploy["spec"]["selector"]["matchLabels"]
    assert replicas["spec"]["ports"] == [
        {"name": "http", "port": 10300, "targetPort": "http", "protocol": "TCP"}
    ]
    (a,) = pod_spec(objs, "DaemonSet")["containers"]
    assert {"--fan-out", "--resolve-seconds=15"} <= set(a["args"])
    url = next(e["value"] for e in a["env"] if e["name"] == "LASCHED_SCHEDULER_URL")
    assert url == "ws://lasched-replicas.lasched-system.svc:10300/agents/v1"


def a_labels(objs: list[Manifest]) -> dict[str, str]:
    labels: dict[str, str] = find(objs, "DaemonSet")["spec"]["selector"]["matchLabels"]
    return labels


def test_the_agent_service_account_is_bound_to_nothing(helm: Path) -> None:
    """No RoleBinding or ClusterRoleBinding names the agent's ServiceAccount."""
    objs = render(helm)
    for o in objs:
        if o["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            assert all(s["name"] != "lasched-agent" for s in o["subjects"]), o


def _raw_sockets(objs: list[Manifest]) -> None:
    spec = pod_spec(objs, "DaemonSet")
    assert spec["securityContext"]["runAsUser"] == 0
    assert "runAsNonRoot" not in spec["securityContext"]
    (c,) = spec["containers"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW"]}
    assert spec["securityContext"]["sysctls"][0]["value"] == "0 0"
    labels = find(objs, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def _host_network(objs: list[Manifest]) -> None:
    spec = pod_spec(objs, "DaemonSet")
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert "sysctls" not in spec["securityContext"], "net sysctls are refused with hostNetwork"
    labels = find(objs, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def _service_monitor(objs: list[Manifest]) -> None:
    sm = find(objs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["endpoints"][0]["port"] == "http"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    service_labels = find(objs, "Service", "lasched")["metadata"]["labels"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    headless_labels = find(objs, "Service", "lasched-replicas")["metadata"]["labels"]
    assert not sm["spec"]["selector"]["matchLabels"].items() <= headless_labels.items()


def _no_agent(objs: list[Manifest]) -> None:
    assert "DaemonSet" not in kinds(objs)
    assert all(o["metadata"]["name"] not in ("lasched-agent", "lasched-replicas") for o in objs)
    # Nobody to let in: an empty "from" would have admitted every source.
    assert find(objs, "NetworkPolicy")["spec"]["ingress"] == []


def _no_fan_out(objs: list[Manifest]) -> None:
    assert [o["metadata"]["name"] for o in objs if o["kind"] == "Service"] == ["lasched"]
    (a,) = pod_spec(objs, "DaemonSet")["containers"]
    url = next(e["value"] for e in a["env"] if e["name"] == "LASCHED_SCHEDULER_URL")
    assert url == "ws://lasched.lasched-system.svc:10271/agents/v1"
    assert not any(arg.startswith(("--fan-out", "--resolve-seconds")) for arg in a["args"])


def _one_replica(objs: list[Manifest]) -> None:
    assert "PodDisruptionBudget" not in kinds(objs)


def _no_preemption(objs: list[Manifest]) -> None:
    rules = cluster_rules(objs)
    assert ("", "pods", "delete") not in rules
    assert ("", "events", "create") not in rules
    assert ("events.k8s.io", "events", "create") in rules


def _extender(objs: list[Manifest]) -> None:
    assert settings.parse(config_of(objs)).extender.enabled


def _remediation(objs: list[Manifest]) -> None:
    r = settings.parse(config_of(objs)).remediation
    assert (r.enabled, r.dry_run, r.grace_period_seconds) == (True, False, 30)
    assert ("", "pods/eviction", "create") in cluster_rules(objs)


def _remediation_dry_run(objs: list[Manifest]) -> None:
    assert settings.parse(config_of(objs)).remediation.dry_run
    assert ("", "pods/eviction", "create") not in cluster_rules(objs)


def _topology_labels(objs: list[Manifest]) -> None:
    t = settings.parse(config_of(objs)).latency.topology
    assert (t.enabled, t.write_labels) == (True, True)
    assert ("", "nodes", "patch") in cluster_rules(objs)


def _topology_no_labels(objs: list[Manifest]) -> None:
    t = settings.parse(config_of(objs)).latency.topology
    assert (t.enabled, t.write_labels, t.hold_seconds) == (True, False, 30)
    assert ("", "nodes", "patch") not in cluster_rules(objs)


def _numa(objs: list[Manifest]) -> None:
    (a,) = pod_spec(objs, "DaemonSet")["containers"]
    env = {"NODE_NAME": "n", "LASCHED_SCHEDULER_URL": "ws://lasched:10271/agents/v1"}
    cfg = agent_config.parse(a["args"], env=env)  # the agent reads every flag the chart writes
    assert cfg.report_topology
    assert (cfg.topology_policy, cfg.topology_scope) == ("single-numa-node", "container")


def _two_profiles(objs: list[Manifest]) -> None:
    assert settings.parse(config_of(objs)).scheduler_names == ("lasched", "edge")


CHECKS: dict[str, Callable[[list[Manifest]], None]] = {
    "raw-sockets": _raw_sockets,
    "host-network": _host_network,
    "service-monitor": _service_monitor,
    "no-agent": _no_agent,
    "no-fan-out": _no_fan_out,
    "one-replica": _one_replica,
    "no-preemption": _no_preemption,
    "extender": _extender,
    "remediation": _remediation,
    "remediation-dry-run": _remediation_dry_run,
    "topology-labels": _topology_labels,
    "topology-no-labels": _topology_no_labels,
    "two-profiles": _two_profiles,
    "numa": _numa,
}


@pytest.mark.parametrize("variant", CHECKS)
def test_values_toggle_the_rendering(helm: Path, variant: str) -> None:
    """Each toggle renders what the chart's README says it does."""
    CHECKS[variant](render(helm, *VARIANTS[variant]))


def test_release_namespace_and_name_flow_into_every_reference(helm: Path) -> None:
    """Another release name and namespace: the Lease, its Role, the agents' identity and
    the scheduler's URL all follow."""
    objs = render(helm, release="edge", namespace="edge-system")
    parsed = settings.parse(config_of(objs))
    assert parsed.leader_election.resource_namespace == "edge-system"
    assert parsed.leader_election.resource_name == "edge-lasched"
    assert parsed.latency.agent_service_accounts == ("edge-system/edge-lasched-agent",)
    role = find(objs, "Role")
    assert role["metadata"]["namespace"] == "edge-system"
    assert role["rules"][1]["resourceNames"] == ["edge-lasched"]
    (a,) = pod_spec(objs, "DaemonSet")["containers"]
    url = next(e["value"] for e in a["env"] if e["name"] == "LASCHED_SCHEDULER_URL")
    assert url == "ws://edge-lasched-replicas.edge-system.svc:10271/agents/v1"
    assert all(o["metadata"].get("namespace", "edge-system") == "edge-system" for o in objs)


REFUSED = {
    "config.leaderElection.leaderElect=false": "config.leaderElection is set by the chart",
    "config.server.port=1": "config.server.port is set by the chart; use scheduler.port",
    "config.profiles=x": "config.profiles is set by the chart",
    "config.remediation.enabled=true": "config.remediation is set by the chart",
    "config.latency.topology.enabled=true": "config.latency.topology is set by the chart",
    "scheduler.leaderElection.leaderElect=false": "needs scheduler.replicaCount=1",
    "scheduler.podAntiAffinity=maybe": "must be soft, hard or none",
}


@pytest.mark.parametrize("value", REFUSED)
def test_contradictory_values_are_refused(helm: Path, value: str) -> None:
    """Setting under ``config`` what other values decide, or two replicas without leader
    election, fails the render with a message naming the value."""
    with pytest.raises(subprocess.CalledProcessError) as err:
        render(helm, value)
    assert REFUSED[value] in err.value.stderr


def test_every_value_is_documented_in_the_chart_readme() -> None:
    """Each value in values.yaml (or a block containing it) is a row of the README, and
    every row names a value that exists."""
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing: list[str] = []

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if f"| `{path}` |" in readme:
                continue
            if isinstance(value, dict) and value:
                walk(value, f"{path}.")
            else:
                missing.append(path)

    walk(values, "")
    assert not missing, f"values without a README row: {missing}"

    def exists(path: str) -> bool:
        node: Any = values
        for key in path.split("."):
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        return True

    rows = re.findall(r"^\| `([\w.]+)` \|", readme, flags=re.MULTILINE)
    assert rows and all(exists(r) for r in rows), [r for r in rows if not exists(r)]


# ---- the real apiserver ----------------------------------------------------------------


async def test_every_rendered_object_is_accepted_by_the_apiserver(
    kc: KubeClient, helm: Path
) -> None:
    """Server-side apply of each variant's objects (a release of its own each) succeeds;
    the ServiceMonitor is rendered only, the dev cluster has no Prometheus Operator CRDs."""
    for i, (variant, values) in enumerate(VARIANTS.items()):
        release = "lasched" if variant == "defaults" else f"v{i}-lasched"
        objs = await asyncio.to_thread(
            render, helm, *values, release=release, namespace=f"{release}-system"
        )
        await apply(kc, [o for o in objs if o["kind"] != "ServiceMonitor"])
        for o in objs:
            if o["kind"] in ("Deployment", "DaemonSet"):
                ns, name = o["metadata"]["namespace"], o["metadata"]["name"]
                group = "apps/v1"
                plural = o["kind"].lower() + "s"
                got = await kc.get(f"/apis/{group}/namespaces/{ns}/{plural}/{name}")
                assert got["spec"]["template"]["spec"]["serviceAccountName"]


async def _dry_run_pod(kc: KubeClient, namespace: str, workload: Manifest) -> None:
    """Create (dry run) a Pod from a workload's template: Pod Security admits or refuses it."""
    template = workload["spec"]["template"]
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "psa-check", "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }
    await kc.request(
        "POST", f"/api/v1/namespaces/{namespace}/pods", params={"dryRun": "All"}, body=body
    )


async def _labelled_namespace(kc: KubeClient, name: str, level: str, sa: Manifest) -> None:
    await ensure_namespace(kc, name)
    await kc.patch(
        f"/api/v1/namespaces/{name}",
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": level}}},
    )
    account = {**sa, "metadata": {**sa["metadata"], "namespace": name}}
    await apply(kc, [account])


async def test_pods_meet_the_stated_pod_security_levels(kc: KubeClient, helm: Path) -> None:
    """Defaults: scheduler and agent are admitted under "restricted". Raw sockets and
    hostNetwork are refused under "baseline" and admitted in the "privileged" namespace
    the chart labels for them."""
    objs = await asyncio.to_thread(render, helm, release="psa", namespace="psa-restricted")
    await apply(kc, objs)
    for kind in ("Deployment", "DaemonSet"):
        await _dry_run_pod(kc, "psa-restricted", find(objs, kind))

    for variant in ("raw-sockets", "host-network"):
        objs = await asyncio.to_thread(
            render, helm, *VARIANTS[variant], release="psa", namespace=f"psa-{variant}"
        )
        agent = find(objs, "DaemonSet")
        account = find(
            objs, "ServiceAccount", agent["spec"]["template"]["spec"]["serviceAccountName"]
        )
        await _labelled_namespace(kc, f"psa-baseline-{variant}", "baseline", account)
        with pytest.raises(ApiError) as err:
            await _dry_run_pod(kc, f"psa-baseline-{variant}", agent)
        assert err.value.status == 403
        assert 'violates PodSecurity "baseline' in err.value.message
        await apply(kc, objs)  # the chart's Namespace says "privileged"
        await _dry_run_pod(kc, f"psa-{variant}", agent)


# ---- the images --------------------------------------------------------------------------


def _copy_context(src: Path, dst: Path) -> None:
    """COPY from the build context: what .dockerignore leaves in."""
    rules = ignore_rules()
    rel = src.relative_to(ROOT).as_posix()
    assert not ignored(rel, rules), f"{rel} is not in the build context"
    if src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        return
    for path in src.rglob("*"):
        if path.is_file() and not ignored(path.relative_to(ROOT).as_posix(), rules):
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def _run_step(command: str, *, root: Path, cwd: Path, env: dict[str, str]) -> None:
    """One RUN: ``python`` and ``pip`` are this machine's; absolute paths live under root."""
    for part in command.split("&&"):
        words = shlex.split(part)
        head = {"python": [sys.executable], "pip": [sys.executable, "-m", "pip"]}[words[0]]
        args = [f"{root}{w}" if w.startswith("/") else w for w in words[1:]]
        out = subprocess.run(
            [*head, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
            check=False,
        )  # fmt: skip
        assert out.returncode == 0, f"{part.strip()}\n{out.stdout}\n{out.stderr}"


def build_target(target: str, root: Path) -> tuple[Path, list[str]]:
    """Run the build stages ``target`` copies from; the venv and the entrypoint it runs."""
    df = parse()
    final = df.stage(target)
    (copy,) = final.all("COPY")
    source_stage, (venv,), _ = copy_args(copy)
    assert source_stage is not None
    env = dict(os.environ)
    workdir = root
    for stage in df.chain(source_stage):
        for keyword, arg in stage.instructions:
            if keyword == "ENV":
                env.update(env_pairs(arg))
                # The one departure: reuse this machine's pip cache, for speed.
                env.pop("PIP_NO_CACHE_DIR", None)
            elif keyword == "WORKDIR":
                workdir = root / arg.lstrip("/")
                workdir.mkdir(parents=True, exist_ok=True)
            elif keyword == "COPY":
                _, sources, dest = copy_args(arg)
                for src in sources:
                    _copy_context(ROOT / src, workdir / dest)
            elif keyword == "RUN":
                _run_step(arg, root=root, cwd=workdir, env=env)
            else:
                raise AssertionError(f"the check does not know {keyword} (stage {stage.name})")
    entrypoint = json.loads(final.all("ENTRYPOINT")[0])
    return root / venv.lstrip("/"), entrypoint


# (modules the image must hold, modules it must not)
IMAGE_MODULES = {
    "scheduler": (
        {"lasched", "lasched_protocol", "kubernetes_asyncio"},
        {"lasched_agent", "aioping", "pip"},
    ),
    "agent": (
        {"lasched_agent", "lasched_protocol", "aioping"},
        {"lasched", "kubernetes_asyncio", "pip"},
    ),
}
# What each process imports at start, beyond its command line.
IMAGE_IMPORTS = {"scheduler": "lasched.app", "agent": "lasched_agent.stream, lasched_agent.icmp"}


@pytest.mark.parametrize("target", IMAGE_MODULES)
def test_image_install_steps_give_a_working_entrypoint(target: str, tmp_path: Path) -> None:
    """The target's build stages, run in a temp dir, leave a venv whose entrypoint answers
    --help, holding its own packages and not the other image's (nor pip)."""
    venv, entrypoint = build_target(target, tmp_path)
    binary = venv / "bin" / entrypoint[0]
    out = subprocess.run(
        [str(binary), *entrypoint[1:], "--help"], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    present, absent = IMAGE_MODULES[target]
    probe = (
        "import importlib.util, json, sys; "
        "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}))"
    )
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", probe, *sorted(present | absent)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    has = json.loads(found.stdout)
    assert {m for m, ok in has.items() if ok} == present
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", f"import {IMAGE_IMPORTS[target]}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
