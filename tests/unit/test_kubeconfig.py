"""lasched reads kubeconfigs with kubernetes_asyncio's loaders without loading its
generated client (lasched.kube.kubeconfig), and every way of authenticating still
works: a token, client certificates, an exec plugin, the in-cluster service account
and its rotation. Each check runs in a fresh interpreter: this one has long imported
the whole client for other tests."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lasched_dev.devcluster import pki

ROOT = Path(__file__).parents[2]

# What the loaders need; anything else of kubernetes_asyncio is a regression.
LOADERS = {
    "kubernetes_asyncio",
    "kubernetes_asyncio.client",
    "kubernetes_asyncio.client.configuration",
    "kubernetes_asyncio.client.exceptions",
    "kubernetes_asyncio.config",
    "kubernetes_asyncio.config.config_exception",
    "kubernetes_asyncio.config.dateutil",
    "kubernetes_asyncio.config.exec_provider",
    "kubernetes_asyncio.config.google_auth",
    "kubernetes_asyncio.config.incluster_config",
    "kubernetes_asyncio.config.kube_config",
    "kubernetes_asyncio.config.openid",
}

# A token numbered by call, expiring in 30 s: within kubernetes_asyncio's 5-minute
# skew, so every refresh runs the plugin again.
EXEC_PLUGIN = """\
import datetime, json, pathlib, sys
counter = pathlib.Path(sys.argv[1])
n = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(n))
expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=30)
print(json.dumps({
    "apiVersion": "client.authentication.k8s.io/v1beta1",
    "kind": "ExecCredential",
    "status": {"token": f"exec-token-{n}",
               "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")},
}))
"""


def python(*args: str, env: dict[str, str] | None = None) -> str:
    """Run this interpreter on ``args`` from the repository root; its standard output."""
    path = os.pathsep.join([str(ROOT), str(ROOT / "dev"), os.environ.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig(tmp_path: Path, port: int, ca: pki.Pki) -> Path:
    """One cluster, three users: a token, client certificates (inline), an exec plugin."""
    plugin = tmp_path / "plugin.py"
    plugin.write_text(EXEC_PLUGIN)
    users = {
        "token": {"token": "static-token"},
        "certs": {
            "client-certificate-data": b64(ca.admin_cert),
            "client-key-data": b64(ca.admin_key),
        },
        "exec": {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": sys.executable,
                "args": [str(plugin), str(tmp_path / "plugin-calls")],
            }
        },
    }
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "token",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": f"https://127.0.0.1:{port}",
                    "certificate-authority-data": b64(ca.ca_cert),
                },
            }
        ],
        "contexts": [{"name": u, "context": {"cluster": "local", "user": u}} for u in users],
        "users": [{"name": u, "user": spec} for u, spec in users.items()],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("kubeconfig")
    ca = pki.create(tmp_path / "pki")
    port = free_port()
    token = tmp_path / "sa-token"
    token.write_text("service-account-token")
    spec = {
        "kubeconfig": str(kubeconfig(tmp_path, port, ca)),
        "contexts": ["token", "certs", "exec"],
        "port": port,
        "ca": str(ca.ca_cert),
        "serving_cert": str(ca.serving_cert),
        "serving_key": str(ca.serving_key),
        "sa_token": str(token),
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(port)}
    out = python("-m", "tests.unit.kubeconfig_probe", str(tmp_path / "spec.json"), env=env)
    result: dict[str, Any] = json.loads(out.splitlines()[-1])
    return result


def test_a_token_reaches_the_apiserver(probed: dict[str, Any]) -> None:
    assert probed["seen"]["token"] == {"auth": "Bearer static-token", "cn": ""}


def test_client_certificates_reach_the_apiserver(probed: dict[str, Any]) -> None:
    assert probed["seen"]["certs"] == {"auth": "", "cn": "lasched-admin"}


def test_an_exec_plugin_token_reaches_the_apiserver(probed: dict[str, Any]) -> None:
    assert probed["seen"]["exec"] == {"auth": "Bearer exec-token-1", "cn": ""}


def test_an_expiring_exec_plugin_token_is_refreshed(probed: dict[str, Any]) -> None:
    """Past the refresh interval an expiring token is replaced by the plugin's next one
    (kubernetes_asyncio's refresh_token, which nobody ran before: tokens of
    ``aws eks get-token`` expired and every request then failed)."""
    # Loading ran the plugin (2); each request past the interval runs it again.
    assert [s["auth"] for s in probed["seen"]["exec-refreshed"]] == [
        "Bearer exec-token-3",
        "Bearer exec-token-4",
    ]


def test_the_in_cluster_token_is_read_again_as_it_rotates(probed: dict[str, Any]) -> None:
    assert [s["auth"] for s in probed["seen"]["in-cluster"]] == [
        "Bearer service-account-token",
        "Bearer rotated-token",
    ]


def test_reading_configurations_loads_no_api_or_model(probed: dict[str, Any]) -> None:
    """Only the loaders' modules: no generated API, model or ApiClient (about 850 modules)."""
    assert set(probed["loaded"]) <= LOADERS


def test_the_whole_client_still_works_when_imported_later(probed: dict[str, Any]) -> None:
    """A caller elsewhere that imports the complete client gets all of it, the same
    Configuration class included, and kube_config's own ApiClient users work."""
    assert probed["whole"] == [
        "Configuration", "True", "True", "True", "CoreV1Api", "p", "Watch", "DynamicClient", "True",
    ]  # fmt: skip


def test_a_configuration_loads_after_the_whole_client(tmp_path: Path) -> None:
    """The other order: kubernetes_asyncio imported whole first, as a test or a program
    embedding lasched may."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "n"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
        })
    )  # fmt: skip
    code = (
        "import asyncio, kubernetes_asyncio\n"
        "from lasched.kube.kubeconfig import kubeconfig_namespace, load_configuration\n"
        f"cfg = asyncio.run(load_configuration({str(path)!r}))\n"
        "print(cfg.host, cfg.api_key['BearerToken'], kubeconfig_namespace("
        f"{str(path)!r}), type(cfg) is kubernetes_asyncio.client.Configuration)\n"
    )
    assert python("-c", code).split() == ["http://127.0.0.1:1", "Bearer", "t", "n", "True"]
