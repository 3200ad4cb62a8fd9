"""Where the apiserver is and how to authenticate: a kubeconfig, or in-cluster.

kubernetes_asyncio's loaders read kubeconfigs as kubectl does (exec credential
plugins, client certificates, token files, OIDC; the in-cluster service
account's token, read again as it rotates), and lasched keeps them for that
alone. They need ``kubernetes_asyncio.config`` and
``kubernetes_asyncio.client.configuration``, but the packages' ``__init__``
import every generated API and model: about 850 modules and 35 MB that the
scheduler would never use. So nothing here is imported before a configuration
is loaded, and then ``kubernetes_asyncio`` and ``kubernetes_asyncio.client``
are registered light (:mod:`lasched.kube.lazypkg`): only the loaders' modules
run. Code that imports the whole client later (tests, benches, a program that
embeds lasched) still gets all of it.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from lasched.kube import lazypkg

if TYPE_CHECKING:
    from kubernetes_asyncio.client.configuration import Configuration

log = logging.getLogger(__name__)

REFRESH_SECONDS = 60.0  # kubernetes_asyncio's refresh_token interval


async def load_configuration(
    kubeconfig: str | None, *, context: str | None = None
) -> Configuration:
    """A kubernetes_asyncio Configuration from a kubeconfig path, or in-cluster.

    With ``kubeconfig=None`` the in-cluster service account is tried first, then
    ``$KUBECONFIG`` / ``~/.kube/config``, as kubectl does. ``context``: one of the
    kubeconfig's contexts instead of its current one (kubectl's ``--context``).
    """
    _prepare()
    from kubernetes_asyncio import config as kube_config
    from kubernetes_asyncio.client.configuration import Configuration

    cfg = Configuration()
    if kubeconfig is None and context is None:
        try:
            kube_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            return cfg
        except kube_config.ConfigException:
            pass
    loader = await kube_config.load_kube_config(
        config_file=kubeconfig, context=context, client_configuration=cfg
    )
    _refresh_tokens(loader, cfg)
    return cfg


def _refresh_tokens(loader: Any, cfg: Configuration) -> None:
    """Keep an exec plugin's or GCP's token fresh, as kubernetes_asyncio's
    ``refresh_token`` loop does (the same loader calls, at most every
    :data:`REFRESH_SECONDS`), driven by the requests themselves.

    kubernetes_asyncio leaves that loop for its caller to run; without it a token
    from ``aws eks get-token`` or ``gke-gcloud-auth-plugin`` expires after minutes
    and every request then fails with 401. The in-cluster loader installs a hook of
    its own (the projected token rotates), and a static token or client
    certificates need none. Refreshes run one at a time; a failed one keeps the old
    token (its requests say 401 if it has expired) and is tried again next time.
    """
    user = getattr(loader, "_user", None) or {}
    if getattr(loader, "provider", None) != "gcp" and "exec" not in user:
        return
    due = time.monotonic() + REFRESH_SECONDS
    running: asyncio.Task[None] | None = None

    async def refresh() -> None:
        nonlocal due
        try:
            if loader.provider == "gcp":
                await loader.load_gcp_token()
            else:
                await loader.load_from_exec_plugin()
            token = getattr(loader, "token", None)
            if token:  # a plugin may give client certificates instead
                cfg.api_key["BearerToken"] = token
        except Exception as e:  # a plugin that fails or hangs up: keep the old token
            log.warning("refreshing the kubeconfig's credentials failed: %s: %s",
                        type(e).__name__, e)  # fmt: skip
        finally:
            due = time.monotonic() + REFRESH_SECONDS

    async def hook(_: Configuration) -> None:
        nonlocal running
        if time.monotonic() < due:
            return
        if running is None or running.done():
            running = asyncio.ensure_future(refresh())
        # Shielded: a request cancelled meanwhile does not cancel the refresh others wait on.
        await asyncio.shield(running)

    cfg.refresh_api_key_hook = hook


def kubeconfig_namespace(kubeconfig: str | None, *, context: str | None = None) -> str | None:
    """The namespace the kubeconfig's current context (or ``context``) names, if any:
    kubectl's default for ``-n``."""
    _prepare()
    from kubernetes_asyncio import config as kube_config

    try:
        contexts, current = kube_config.list_kube_config_contexts(config_file=kubeconfig)
    except (kube_config.ConfigException, OSError):
        return None
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


def _prepare() -> None:
    """Make ``kubernetes_asyncio.config`` importable without the generated client."""
    if "kubernetes_asyncio.config" in sys.modules:
        return
    client = lazypkg.light_package("kubernetes_asyncio.client")
    if not lazypkg.is_light(client):  # the whole client is loaded already: nothing to spare
        return
    from kubernetes_asyncio.client.configuration import Configuration

    ns = vars(client)
    # kube_config and incluster_config import these two from the package itself.
    # Configuration is the real class, as the complete package has it. ApiClient
    # serves only new_client_from_config, which lasched never calls, and imports
    # every model: kube_config gets a stand-in that imports it when called, and the
    # package does not keep it (asked for ApiClient, it completes as usual).
    ns.setdefault("Configuration", Configuration)
    ns["ApiClient"] = _api_client
    try:
        importlib.import_module("kubernetes_asyncio.config")
    finally:
        if ns.get("ApiClient") is _api_client:
            del ns["ApiClient"]


def _api_client(*args: Any, **kwargs: Any) -> Any:
    """kubernetes_asyncio's ApiClient, imported (with every model) when one is made."""
    from kubernetes_asyncio.client.api_client import ApiClient

    return ApiClient(*args, **kwargs)
