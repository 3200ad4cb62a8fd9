"""What ``lasched run`` loads before it schedules: nothing that only other commands, or
only some configurations, use. Checked in a fresh interpreter, which this one is not."""

from __future__ import annotations

import json

import pytest

from tests.unit.test_kubeconfig import python

# What `lasched run` imports up to the scheduler's start (lasched.cli.main's path).
RUN_PATH = """
import json, sys
from lasched import cli
cli._parser()
cli._leave_out_unused_imports()
import lasched.app
cli._load_config(None)
print(json.dumps(sorted(sys.modules)))
"""


@pytest.fixture(scope="module")
def loaded() -> set[str]:
    modules: list[str] = json.loads(python("-c", RUN_PATH))
    return set(modules)


@pytest.mark.parametrize(
    ("package", "why"),
    [
        ("kubernetes_asyncio", "loaded when a configuration is read, and then only its loaders"),
        ("rich", "tables of `lasched explain` / `latency` and the kubectl plugin"),
        ("aiofiles", "the latency snapshot file, when one is configured"),
        ("lasched_dev", "the developer tools"),
        ("pycares", "c-ares, aiohttp's resolver with aiodns; lasched uses the system's"),
    ],
)
def test_the_run_path_leaves_out(loaded: set[str], package: str, why: str) -> None:
    assert not {m for m in loaded if m == package or m.startswith(package + ".")}, why


def test_the_run_path_has_the_scheduler(loaded: set[str]) -> None:
    """The check sees the real path: the scheduler, its server and its client are there."""
    assert {"lasched.app", "lasched.scheduler", "lasched.server", "lasched.kube.client"} <= loaded
