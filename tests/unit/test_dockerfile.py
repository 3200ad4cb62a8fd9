"""The Dockerfile's rules, read from the file itself: pinned base, two non-root targets,
nothing built in a final image, and a .dockerignore that sends only what is copied.

No Docker engine runs here; ``make lint`` runs hadolint on the file, and
tests/integration/test_deploy.py runs the build stages' install steps in a
throwaway virtualenv. The small parser below serves both.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
TARGETS = ("scheduler", "agent")


@dataclass
class Stage:
    """One ``FROM`` block: its base (an image or an earlier stage) and its instructions."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def chain(self, name: str) -> list[Stage]:
        """The stage and the stages it is built FROM, base first."""
        names = {s.name for s in self.stages}
        out: list[Stage] = []
        stage: Stage | None = self.stage(name)
        while stage is not None:
            out.insert(0, stage)
            stage = self.stage(stage.base) if stage.base in names else None
        return out


def logical_lines(text: str) -> list[str]:
    """Instructions with their backslash continuations joined, comments dropped."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def parse(path: Path = DOCKERFILE) -> Dockerfile:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            words = rest.split()
            base = words[0]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=base))
        elif keyword == "ARG" and not stages:
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return Dockerfile(args=args, stages=stages)


def copy_args(arg: str) -> tuple[str | None, list[str], str]:
    """``COPY [--from=stage] src... dst`` as (stage, sources, destination)."""
    words = shlex.split(arg)
    source_stage = None
    while words and words[0].startswith("--"):
        flag = words.pop(0)
        if flag.startswith("--from="):
            source_stage = flag.removeprefix("--from=")
    return source_stage, words[:-1], words[-1]


def env_pairs(arg: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in shlex.split(arg))


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def ignore_rules(path: Path = DOCKERIGNORE) -> list[tuple[bool, re.Pattern[str]]]:
    """(exception, regex) per .dockerignore line, in order; the last match decides."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        rules.append((exception, _glob_regex(pattern)))
    return rules


def ignored(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether a path of the build context is left out (a pattern matches it or a parent)."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for exception, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            verdict = not exception
    return verdict


DF = parse()


def test_base_image_is_pinned_to_an_exact_release() -> None:
    """The base is an ARG default naming an exact Python patch release, never a floating tag."""
    image = DF.args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", image), image
    stage_names = {s.name for s in DF.stages}
    for stage in DF.stages:
        assert stage.base in stage_names or stage.base == "${PYTHON_IMAGE}", stage


def test_the_default_target_is_the_scheduler() -> None:
    """A plain ``docker build .`` builds the last stage: the scheduler."""
    assert DF.stages[-1].name == "scheduler"


@pytest.mark.parametrize("target", TARGETS)
def test_final_images_run_no_build_step_and_as_non_root(target: str) -> None:
    """A final stage starts from the bare base, only copies a venv in, and runs as 65532."""
    stage = DF.stage(target)
    assert stage.base == "${PYTHON_IMAGE}"
    assert not stage.all("RUN"), "a RUN in a final stage would leave its tools in the image"
    for arg in stage.all("COPY"):
        source_stage, _, _ = copy_args(arg)
        assert source_stage is not None and source_stage.startswith("build"), arg
    assert stage.all("USER") == ["65532:65532"]
    (entrypoint,) = stage.all("ENTRYPOINT")
    assert isinstance(json.loads(entrypoint), list), "exec form: signals reach the process"


def test_entrypoints() -> None:
    """The scheduler runs ``lasched run``; the agent runs ``lasched-agent``."""
    assert json.loads(DF.stage("scheduler").all("ENTRYPOINT")[0]) == ["lasched", "run"]
    assert json.loads(DF.stage("agent").all("ENTRYPOINT")[0]) == ["lasched-agent"]


def test_the_agent_image_holds_only_the_protocol_and_the_agent() -> None:
    """The agent's build stage copies and installs ./protocol and ./agent, nothing of lasched."""
    chain = DF.chain("build-agent")
    copied = [src for s in chain for arg in s.all("COPY") for src in copy_args(arg)[1]]
    assert sorted(copied) == ["agent/", "protocol/"]
    (run,) = DF.stage("build-agent").all("RUN")
    assert run.endswith("install ./protocol ./agent")


def test_the_scheduler_image_never_installs_the_agent() -> None:
    """aioping (GPL-2.0) stays out of the scheduler's image: ./agent is neither copied nor
    installed there."""
    chain = DF.chain("build-scheduler")
    copied = [src for s in chain for arg in s.all("COPY") for src in copy_args(arg)[1]]
    assert "agent/" not in copied
    assert "agent" not in " ".join(DF.stage("build-scheduler").all("RUN"))


def test_no_add_and_no_pip_in_the_final_virtualenvs() -> None:
    """COPY, never ADD; virtualenvs are made without pip."""
    for stage in DF.stages:
        assert not stage.all("ADD"), stage.name
        for run in stage.all("RUN"):
            if "-m venv" in run:
                assert "--without-pip" in run, run


def test_dockerignore_sends_only_what_the_dockerfile_copies() -> None:
    """Every COPY source is in the context; tests, docs, the git tree and venvs are not."""
    rules = ignore_rules()
    for stage in DF.stages:
        for arg in stage.all("COPY"):
            source_stage, sources, _ = copy_args(arg)
            if source_stage is None:
                for src in sources:
                    assert not ignored(src.rstrip("/"), rules), src
    for path in (
        "lasched/scheduler.py",
        "agent/lasched_agent/__main__.py",
        "protocol/pyproject.toml",
    ):
        assert not ignored(path, rules), path
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        "tests/unit/test_queue.py",
        "docs/deploy.md",
        "bench/results/x.json",
        "lasched/__pycache__/cli.cpython-311.pyc",
        "agent/lasched_agent.egg-info/PKG-INFO",
    ):
        assert ignored(path, rules), path
