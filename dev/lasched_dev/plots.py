"""PNG pictures: the RTT matrix as a heatmap, and a topology with the pods on it.

matplotlib is an optional extra (``pip install 'lasched[plots]'``); it is
imported only when a picture is asked for, so the scheduler never loads it.
Without it, drawing raises :class:`ImportError` with that instruction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MISSING_MATPLOTLIB = "PNG output needs matplotlib: pip install 'lasched[plots]'"


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ImportError(MISSING_MATPLOTLIB) from None
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def heatmap_png(
    path: Path,
    *,
    places: Sequence[str],
    pairs: Sequence[Mapping[str, Any]],
    title: str = "RTT (ms), row measures column",
) -> None:
    """The matrix of ``pairs`` (``src``, ``dst``, ``ms``, ``stale``); stale cells hatched.

    Rows are the places that measure (have a pair as ``src``), columns every place.
    """
    plt = _pyplot()
    sources = {p["src"] for p in pairs}
    rows = [p for p in places if p in sources]
    row_of = {p: i for i, p in enumerate(rows)}
    col_of = {p: j for j, p in enumerate(places)}
    n, m = len(rows), len(places)
    values = [[math.nan] * m for _ in range(n)]
    stale: list[tuple[int, int]] = []
    for p in pairs:
        i, j = row_of.get(p["src"]), col_of.get(p["dst"])
        if i is None or j is None:
            continue
        values[i][j] = float(p["ms"])
        if p.get("stale"):
            stale.append((i, j))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * m + 3.0), max(3.0, 0.45 * n + 2.0)))
    image = ax.imshow(values, cmap="viridis_r", interpolation="nearest", aspect="auto")
    fig.colorbar(image, ax=ax, label="ms", shrink=0.8)
    ax.set_xticks(range(m), labels=list(places), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels=rows, fontsize=8)
    ax.set_xlabel("to")
    ax.set_ylabel("from (measured by)")
    for i, j in stale:
        ax.add_patch(
            plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="red", lw=0)
        )
    known = [v for row in values for v in row if not math.isnan(v)]
    if m <= 24 and known:
        middle = (min(known) + max(known)) / 2
        for i in range(n):
            for j in range(m):
                v = values[i][j]
                if not math.isnan(v):
                    color = "black" if v < middle else "white"  # light cells are the low ones
                    text = f"{v:.1f}" if v < 10 else f"{v:.0f}"
                    ax.text(j, i, text, ha="center", va="center", fontsize=6, color=color)
    ax.set_title(title + (" — hatched: stale" if stale else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@dataclass(frozen=True, slots=True)
class Site:
    """A group of nodes drawn as one box at (x, y), its top-left corner."""

    name: str
    x: float
    y: float
    nodes: tuple[str, ...]
    subtitle: str = ""


@dataclass(frozen=True, slots=True)
class Place:
    """A user endpoint, drawn as a star."""

    name: str
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class PodMark:
    name: str
    node: str
    color: str = "black"


@dataclass(frozen=True, slots=True)
class Link:
    """A labelled dashed line between two sites or places (by name)."""

    a: str
    b: str
    label: str


_SITE_WIDTH = 3.2
_NODE_HEIGHT = 0.42
_POD_HEIGHT = 0.3


def _site_height(site: Site, pods: Mapping[str, list[PodMark]]) -> float:
    return 0.7 + sum(_NODE_HEIGHT + _POD_HEIGHT * len(pods.get(n, [])) for n in site.nodes)


def topology_png(
    path: Path,
    *,
    sites: Sequence[Site],
    places: Sequence[Place] = (),
    pods: Sequence[PodMark] = (),
    links: Sequence[Link] = (),
    legend: Mapping[str, str] | None = None,
    title: str = "",
    node_notes: Mapping[str, str] | None = None,
) -> None:
    """Sites as boxes of nodes, each node with its pods listed under it, places as stars;
    ``node_notes``: a few words written at the right of a node's box (its inferred site)."""
    plt = _pyplot()
    by_node: dict[str, list[PodMark]] = {}
    for p in pods:
        by_node.setdefault(p.node, []).append(p)
    centres: dict[str, tuple[float, float]] = {}
    for s in sites:
        centres[s.name] = (s.x + _SITE_WIDTH / 2, s.y - _site_height(s, by_node) / 2)
    for pl in places:
        centres[pl.name] = (pl.x, pl.y)
    xs = [s.x for s in sites] + [pl.x for pl in places]
    ys = [s.y for s in sites] + [pl.y for pl in places]
    bottoms = [s.y - _site_height(s, by_node) for s in sites] + ys
    x0, x1 = min(xs) - 0.5, max(xs) + _SITE_WIDTH + 0.5
    y0, y1 = min(bottoms) - 0.6, max(ys) + 0.8
    fig, ax = plt.subplots(figsize=((x1 - x0) * 0.9, (y1 - y0) * 0.9))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.axis("off")
    for link in links:
        (ax_, ay), (bx, by) = centres[link.a], centres[link.b]
        ax.plot([ax_, bx], [ay, by], ls="--", color="0.6", lw=1, zorder=0)
        ax.text((ax_ + bx) / 2, (ay + by) / 2, link.label, fontsize=8, color="0.3",
                ha="center", va="center", zorder=1,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none"})  # fmt: skip
    for s in sites:
        _draw_site(plt, ax, s, by_node, node_notes or {})
    for pl in places:
        ax.plot(pl.x, pl.y, marker="*", markersize=16, color="goldenrod", zorder=3)
        ax.text(pl.x, pl.y - 0.35, pl.name, ha="center", va="top", fontsize=9, weight="bold")
    if legend:
        handles = [
            plt.Line2D([], [], marker="s", ls="", color=c, label=lbl) for lbl, c in legend.items()
        ]
        ax.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8,
                  frameon=False, bbox_to_anchor=(0.5, -0.02))  # fmt: skip
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _draw_site(
    plt: Any, ax: Any, s: Site, by_node: Mapping[str, list[PodMark]], notes: Mapping[str, str]
) -> None:
    h = _site_height(s, by_node)
    ax.add_patch(plt.Rectangle((s.x, s.y - h), _SITE_WIDTH, h, fc="0.96", ec="0.5", lw=1, zorder=1))
    ax.text(s.x + 0.1, s.y - 0.12, s.name, fontsize=10, weight="bold", va="top", zorder=2)
    if s.subtitle:
        ax.text(s.x + _SITE_WIDTH - 0.1, s.y - 0.14, s.subtitle, fontsize=7, color="0.4",
                va="top", ha="right", zorder=2)  # fmt: skip
    y = s.y - 0.6
    for node in s.nodes:
        ax.add_patch(plt.Rectangle((s.x + 0.1, y - 0.32), _SITE_WIDTH - 0.2, 0.32,
                                   fc="white", ec="0.6", lw=0.8, zorder=2))  # fmt: skip
        ax.text(s.x + 0.2, y - 0.16, node, fontsize=8, va="center", zorder=3)
        if node in notes:
            ax.text(s.x + _SITE_WIDTH - 0.2, y - 0.16, notes[node], fontsize=6.5, color="teal",
                    va="center", ha="right", zorder=3)  # fmt: skip
        y -= _NODE_HEIGHT
        for pod in by_node.get(node, []):
            ax.text(s.x + 0.45, y - 0.02, "■ " + pod.name, fontsize=8, color=pod.color,
                    va="top", zorder=3)  # fmt: skip
            y -= _POD_HEIGHT
