"""The dev cluster's binaries (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok) and
helm, which lints and renders the chart: found, or built once per machine with Go.

Each binary is looked up in this order, and the first hit wins:

1. an environment variable naming the file (``LASCHED_KUBE_APISERVER`` ...);
2. the build cache, keyed by version: ``$LASCHED_CACHE_DIR/bin/<module>-<version>/``
   (default ``~/.cache/lasched``);
3. ``PATH``, but only when the binary there reports the pinned version;
4. otherwise it is built from the small Go modules in ``gotools/`` with the
   machine's Go toolchain and the Go module proxy, and put in the cache.

The Go modules pin their whole dependency graph in ``go.sum``; builds use
``-mod=readonly`` and ``GOTOOLCHAIN=local`` so that nothing is resolved anew.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

KUBERNETES_VERSION = "v1.35.4"
ETCD_VERSION = "v3.6.5"
KWOK_VERSION = "v0.7.0"
HELM_VERSION = "v3.20.2"

GOTOOLS_DIR = Path(__file__).parent / "gotools"

_K8S_VERSION_PKG = "k8s.io/component-base/version"
_K8S_LDFLAGS = " ".join(
    [
        f"-X {_K8S_VERSION_PKG}.gitVersion={KUBERNETES_VERSION}",
        f"-X {_K8S_VERSION_PKG}.gitMajor=1",
        f"-X {_K8S_VERSION_PKG}.gitMinor={KUBERNETES_VERSION.split('.')[1]}",
        f"-X {_K8S_VERSION_PKG}.gitTreeState=clean",
        f"-X {_K8S_VERSION_PKG}.buildDate=1970-01-01T00:00:00Z",
        f"-X k8s.io/client-go/pkg/version.gitVersion={KUBERNETES_VERSION}",
    ]
)

# helm's own Makefile stamps its version, and the Kubernetes version it assumes
# for .Capabilities and deprecation lint (the minor of its client-go, major 1).
_HELM_LDFLAGS = " ".join(
    [
        f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
        "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1",
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=35",
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1",
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=35",
    ]
)

ProgressFn = Callable[[str, int, int], None]
"""Called as ``progress(binary, packages_done, packages_total)`` during a build."""


@dataclass(frozen=True, slots=True)
class Tool:
    """One binary and how to get it."""

    name: str
    module: str  # directory under gotools/
    version: str
    package: str
    ldflags: str = ""
    version_args: tuple[str, ...] = ("--version",)

    @property
    def env_var(self) -> str:
        return "LASCHED_" + self.name.upper().replace("-", "_")

    def cache_path(self, cache_dir: Path) -> Path:
        return cache_dir / "bin" / f"{self.module}-{self.version}" / self.name


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool(
            name="etcd",
            module="etcd",
            version=ETCD_VERSION,
            package="go.etcd.io/etcd/server/v3",
        ),
        Tool(
            name="kube-apiserver",
            module="kubernetes",
            version=KUBERNETES_VERSION,
            package="k8s.io/kubernetes/cmd/kube-apiserver",
            ldflags=_K8S_LDFLAGS,
        ),
        Tool(
            name="kube-controller-manager",
            module="kubernetes",
            version=KUBERNETES_VERSION,
            package="k8s.io/kubernetes/cmd/kube-controller-manager",
            ldflags=_K8S_LDFLAGS,
        ),
        Tool(
            name="kube-scheduler",
            module="kubernetes",
            version=KUBERNETES_VERSION,
            package="k8s.io/kubernetes/cmd/kube-scheduler",
            ldflags=_K8S_LDFLAGS,
        ),
        Tool(
            name="kwok",
            module="kwok",
            version=KWOK_VERSION,
            package="sigs.k8s.io/kwok/cmd/kwok",
            version_args=("--version",),
        ),
        Tool(
            name="helm",
            module="helm",
            version=HELM_VERSION,
            package="helm.sh/helm/v3/cmd/helm",
            ldflags=_HELM_LDFLAGS,
            version_args=("version", "--short"),
        ),
    )
}


class BuildError(RuntimeError):
    """A binary could not be found or built; the message says what to do."""


def cache_dir() -> Path:
    env = os.environ.get("LASCHED_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "lasched"


def _reports_version(path: str, tool: Tool) -> bool:
    try:
        out = subprocess.run(
            [path, *tool.version_args], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    text = out.stdout + out.stderr
    return tool.version in text or tool.version.lstrip("v") in text


def locate(tool: Tool, cache: Path | None = None) -> Path | None:
    """The binary for ``tool`` if one is already on this machine, else None."""
    env = os.environ.get(tool.env_var)
    if env:
        path = Path(env)
        if not os.access(path, os.X_OK):
            raise BuildError(f"{tool.env_var}={env} is not an executable file")
        return path
    cached = tool.cache_path(cache or cache_dir())
    if os.access(cached, os.X_OK):
        return cached
    on_path = shutil.which(tool.name)
    if on_path and _reports_version(on_path, tool):
        return Path(on_path)
    return None


@contextmanager
def _build_lock(cache: Path) -> Iterator[None]:
    """One build at a time per cache, across processes (pytest-xdist, two shells)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".build.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GOTOOLCHAIN"] = "local"
    env["GOFLAGS"] = "-mod=readonly -buildvcs=false"
    env.setdefault("CGO_ENABLED", "0")
    return env


async def _count_packages(tool: Tool, go: str, env: dict[str, str]) -> int:
    proc = await asyncio.create_subprocess_exec(
        go, "list", "-deps", tool.package,
        cwd=GOTOOLS_DIR / tool.module, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise BuildError(f"go list for {tool.name} failed:\n{err.decode(errors='replace')[-2000:]}")
    return max(1, len(out.splitlines()))


async def build(
    tool: Tool, *, cache: Path | None = None, progress: ProgressFn | None = None
) -> Path:
    """Build ``tool`` into the cache and return its path.

    ``go build -v`` names each package as it compiles it, which gives a true
    progress count against ``go list -deps``. Cancelling kills the build.
    """
    cache = cache or cache_dir()
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            f"{tool.name} {tool.version} is not built yet and no Go toolchain is on PATH; "
            f"install Go >= 1.25, or point {tool.env_var} at a {tool.name} binary"
        )
    target = tool.cache_path(cache)
    with _build_lock(cache):
        if os.access(target, os.X_OK):  # another process built it while we waited
            return target
        env = _go_env()
        total = await _count_packages(tool, go, env)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        args = [go, "build", "-v", "-trimpath", "-ldflags", f"-s -w {tool.ldflags}".strip()]
        proc = await asyncio.create_subprocess_exec(
            *args, "-o", str(tmp), tool.package,
            cwd=GOTOOLS_DIR / tool.module, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        done, tail = 0, list[str]()
        try:
            while line := await proc.stderr.readline():
                text = line.decode(errors="replace").rstrip()
                tail = [*tail[-40:], text]
                if text and not text.startswith(("#", " ", "\t", "go: ")):
                    done += 1
                    if progress:
                        progress(tool.name, min(done, total), total)
            rc = await proc.wait()
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if rc != 0:
            tmp.unlink(missing_ok=True)
            raise BuildError(
                f"building {tool.name} failed (go build exit {rc}):\n" + "\n".join(tail)
            )
        tmp.replace(target)
        if progress:
            progress(tool.name, total, total)
        return target


async def ensure(
    names: list[str] | None = None, *, progress: ProgressFn | None = None
) -> dict[str, Path]:
    """Paths to the named binaries (all by default), building what is missing.

    Builds run one after another: on a two-core machine parallel ``go build``
    runs gain nothing and double the peak memory.
    """
    found: dict[str, Path] = {}
    for name in names or list(TOOLS):
        tool = TOOLS[name]
        path = locate(tool)
        if path is None:
            log.info("building %s %s with Go (once per machine)", name, tool.version)
            path = await build(tool, progress=progress)
        found[name] = path
    return found
