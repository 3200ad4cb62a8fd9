"""The peers' kube-scheduler configurations say what the docs say they do."""

from __future__ import annotations

from pathlib import Path

import yaml

from bench import peers
from lasched import kubeschedconfig


def test_the_lasched_plugins_peer_disables_only_what_lasched_lacks() -> None:
    peer = peers.KUBE_LASCHED_PLUGINS
    text = peers.kube_scheduler_config(peer, kubeconfig=Path("/k"), extender_url=None)
    data = yaml.safe_load(text)
    [profile] = data["profiles"]
    disabled = [p["name"] for p in profile["plugins"]["multiPoint"]["disabled"]]
    assert disabled == list(peer.disabled_plugins)
    assert set(disabled) <= set(kubeschedconfig._ELSEWHERE)  # plugins lasched does not have
    # lasched reads the same file without complaint: nothing it runs is cut.
    assert kubeschedconfig.translate(data).settings.scheduler_names == ("kube-scheduler",)
    assert (data["clientConnection"]["qps"], data["clientConnection"]["burst"]) == (5000, 10000)


def test_the_tuned_peer_runs_the_default_plugins() -> None:
    text = peers.kube_scheduler_config(peers.KUBE_TUNED, kubeconfig=Path("/k"), extender_url=None)
    assert "plugins" not in yaml.safe_load(text)["profiles"][0]
