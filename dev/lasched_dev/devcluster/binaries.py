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

Kubernetes has one module per release it can build, ``gotools/kubernetes-<version>/``
(:data:`KUBERNETES_VERSIONS`); ``LASCHED_KUBERNETES_VERSION`` picks one of them
instead of :data:`DEFAULT_KUBERNETES_VERSION`.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# The Kubernetes releases with a module in gotools/ (kubernetes-<version>/), newest first.
KUBERNETES_VERSIONS = ("v1.37.2", "v1.35.4")
DEFAULT_KUBERNETES_VERSION = KUBERNETES_VERSIONS[0]
KUBERNETES_VERSION = os.environ.get("LASCHED_KUBERNETES_VERSION") or DEFAULT_KUBERNETES_VERSION
# The etcd Kubernetes v1.37 is tested with (its build/dependencies.yaml); v1.35 works with it too.
ETCD_VERSION = "v3.7.0"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.20.2"

GOTOOLS_DIR = Path(__file__).parent / "gotools"


def kubernetes_minor(version: str = KUBERNETES_VERSION) -> int:
    """35 for ``v1.35.4``."""
    return int(version.split(".")[1])


def _k8s_ldflags(version: str) -> str:
    """What Kubernetes' hack/lib/version.sh stamps, so that /version reports ``version``."""
    pkg = "k8s.io/component-base/version"
    return " ".join(
        [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor=1",
            f"-X {pkg}.gitMinor={kubernetes_minor(version)}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
            f"-X k8s.io/client-go/pkg/version.gitVersion={version}",
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
    module: str
    version: str
    package: str
    ldflags: str = ""
    version_args: tuple[str, ...] = ("--version",)
    gomod: str = ""  # its Go module's directory under gotools/ (default: module)

    @property
    def env_var(self) -> str:
        return "LASCHED_" + self.name.upper().replace("-", "_")

    @property
    def gomod_dir(self) -> Path:
        return GOTOOLS_DIR / (self.gomod or self.module)

    def cache_path(self, cache_dir: Path) -> Path:
        return cache_dir / "bin" / f"{self.module}-{self.version}" / self.name


def kubernetes_tools(version: str = KUBERNETES_VERSION) -> list[Tool]:
    """kube-apiserver, kube-controller-manager and kube-scheduler of one release."""
    return [
        Tool(
            name=name,
            module="kubernetes",
            version=version,
            package=f"k8s.io/kubernetes/cmd/{name}",
            ldflags=_k8s_ldflags(version),
            gomod=f"kubernetes-{version}",
        )
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    ]


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool(
            name="etcd",
            module="etcd",
            version=ETCD_VERSION,
            package="go.etcd.io/etcd/server/v3",
        ),
        *kubernetes_tools(),
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


@functools.cache
def _version_of(path: str, mtime_ns: int) -> str:
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    match = re.search(r"\bv\d+\.\d+\.\d+\S*", out)
    return match.group(0) if match else ""


def binary_version(path: Path) -> str:
    """The release a Kubernetes binary reports (``kube-apiserver --version``), or,
    when it names none, the one this module builds (:data:`KUBERNETES_VERSION`)."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return KUBERNETES_VERSION
    return _version_of(str(path), mtime) or KUBERNETES_VERSION


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
        cwd=tool.gomod_dir, env=env,
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
            f"install Go >= 1.26, or point {tool.env_var} at a {tool.name} binary"
        )
    if not (tool.gomod_dir / "go.mod").is_file():
        known = ", ".join(KUBERNETES_VERSIONS)
        raise BuildError(
            f"no Go module to build {tool.name} {tool.version} from ({tool.gomod_dir}); "
            f"LASCHED_KUBERNETES_VERSION can be one of {known}"
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
            cwd=tool.gomod_dir, env=env,
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
