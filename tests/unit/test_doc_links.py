"""Docs and code point only at docs that exist: Markdown links (with their anchors) and
``docs/<name>.md`` mentions in source resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
MARKDOWN = sorted(
    p
    for pattern in ("README.md", "docs/*.md", "deploy/**/*.md", "agent/*.md", "protocol/*.md")
    for p in ROOT.glob(pattern)
)
SOURCES = sorted(
    p for pattern in ("lasched/**/*.py", "bench/*.py", "agent/**/*.py") for p in ROOT.glob(pattern)
)
_FENCE = re.compile(r"```.*?```", re.S)
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_DOC = re.compile(r"docs/([\w-]+\.md)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def broken_links(md: Path) -> list[str]:
    broken = []
    for m in _LINK.finditer(_FENCE.sub("", md.read_text())):
        link = m.group(1)
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = link.partition("#")
        target = (md.parent / path).resolve() if path else md
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link}: no such heading")
    return broken


@pytest.mark.parametrize("md", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_links_resolve(md: Path) -> None:
    """Every relative link names a file that exists and, with an anchor, a heading in it."""
    assert broken_links(md) == []


def test_source_mentions_existing_docs() -> None:
    """A comment or docstring that says docs/<name>.md points at a doc that exists."""
    missing = [
        f"{src.relative_to(ROOT)}: {m.group(0)}"
        for src in SOURCES
        for m in _DOC.finditer(src.read_text())
        if not (ROOT / "docs" / m.group(1)).exists()
    ]
    assert missing == []


def test_the_check_finds_a_broken_link(tmp_path: Path) -> None:
    """A link to a missing file or heading is reported."""
    (tmp_path / "a.md").write_text("# Title\n\n[x](b.md) [y](#nowhere) [z](#title)\n")
    assert broken_links(tmp_path / "a.md") == ["b.md: no such file", "#nowhere: no such heading"]
