"""Topology inference: each node's site, its coarser groups and its tier, held steady.

Every recompute clusters the fresh RTT matrix (:mod:`lasched.latency.sites`)
and *proposes* a :class:`Place` for every measured node: its group in each
configured layer (``site``, ``region``, ...) and its site's tier. What is
*adopted*, shown and written as labels moves more slowly than what is proposed:

* **hysteresis**: a node takes a proposal that differs from its current place
  only after the same proposal was made at every recompute for ``holdSeconds``;
  any other proposal in between starts the hold anew. So RTT jitter that
  briefly splits or joins groups never moves a node. A node seen for the first
  time takes its first proposal at once (there is nothing for it to flap from).
* **no evidence, no move**: a node with no fresh pair to any other node keeps
  its place (and a node never measured has none).
* **stable names**: groups are named ``<layer>-<n>``. A new partition's groups
  take the names their members hold now, the largest overlap first (ties: the
  name, then the group's first member, in sort order); a group left without
  one takes the name its members are waiting for, and else the smallest
  ``<n>`` no node holds or waits for. A node's place read back from its labels
  (:meth:`TopologyInference.seed`) lets a new leader keep the names.

**Tiers** are per site: ``cloud`` when at least half of the site's nodes are
labelled ``kubernetes.io/role=cloud`` (the label CloudTier and LatencyScore's
``cloud`` preference read), else ``edge``. RTTs decide which nodes share a
site; the role label decides what a site is, and a mislabelled minority
cannot flip it.

Everything here is pure and reads the time it is given, so holds are tested
in virtual time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from lasched.latency.sites import RttMatrix, layers
from lasched.settings import TopologyLayer

LABEL_PREFIX = "topology.lasched.io/"
TIER_LABEL = LABEL_PREFIX + "tier"
EDGE = "edge"
CLOUD = "cloud"


@dataclass(frozen=True, slots=True)
class Place:
    """Where a node is: its group in each layer (finest first) and its site's tier."""

    groups: tuple[str, ...]
    tier: str

    @property
    def site(self) -> str:
        return self.groups[0]


@dataclass(frozen=True, slots=True)
class Pending:
    """A proposal that differs from the node's place, made without a break since ``since``."""

    place: Place
    since: float


class TopologyInference:
    """Proposals from RTT matrices, adopted with hysteresis (see the module)."""

    def __init__(self, *, layers: Sequence[TopologyLayer], hold_seconds: float) -> None:
        if not layers:
            raise ValueError("`layers` must name at least one layer")
        if not hold_seconds >= 0:
            raise ValueError(f"`hold_seconds` must be non-negative, not {hold_seconds}")
        self.layers = tuple(layers)
        self.hold = hold_seconds
        self._places: dict[str, Place] = {}
        self._pending: dict[str, Pending] = {}

    # ---- reads ------------------------------------------------------------------

    def place(self, node: str) -> Place | None:
        return self._places.get(node)

    def pending(self, node: str) -> Pending | None:
        return self._pending.get(node)

    def places(self) -> dict[str, Place]:
        return dict(self._places)

    def next_due(self) -> float | None:
        """When the earliest hold ends (a recompute then may adopt it); None: none pending."""
        return min((p.since + self.hold for p in self._pending.values()), default=None)

    def labels(self, node: str) -> dict[str, str] | None:
        """The node's topology labels, or None while it has no place."""
        p = self._places.get(node)
        if p is None:
            return None
        out = {LABEL_PREFIX + layer.name: g for layer, g in zip(self.layers, p.groups, strict=True)}
        out[TIER_LABEL] = p.tier
        return out

    # ---- changes ----------------------------------------------------------------

    def seed(self, node: str, labels: Mapping[str, str]) -> bool:
        """Take a node's place from its labels, unless it has one; True when taken.

        Only a complete set (every layer and the tier) is taken: labels written under
        another layer configuration are recomputed instead.
        """
        if node in self._places:
            return False
        groups = tuple(labels.get(LABEL_PREFIX + layer.name, "") for layer in self.layers)
        tier = labels.get(TIER_LABEL, "")
        if not all(groups) or tier not in (EDGE, CLOUD):
            return False
        self._places[node] = Place(groups, tier)
        return True

    def forget_except(self, nodes: Iterable[str]) -> None:
        """Drop the nodes that are gone."""
        keep = set(nodes)
        for d in (self._places, self._pending):
            for n in [n for n in d if n not in keep]:
                del d[n]

    def reset(self) -> None:
        """Forget everything (a follower: the next leader reads the labels again)."""
        self._places.clear()
        self._pending.clear()

    def update(self, matrix: RttMatrix, *, cloud: Callable[[str], bool], now: float) -> list[str]:
        """Propose from ``matrix`` and adopt what held; returns the nodes whose place changed.

        ``cloud``: whether a node is labelled ``kubernetes.io/role=cloud``.
        """
        proposals = self.propose(matrix, cloud=cloud)
        moved = []
        for node, proposed in proposals.items():
            current = self._places.get(node)
            if current == proposed:
                self._pending.pop(node, None)
                continue
            if current is not None:
                waiting = self._pending.get(node)
                if waiting is None or waiting.place != proposed:
                    self._pending[node] = waiting = Pending(proposed, now)
                if now - waiting.since < self.hold:
                    continue
            self._places[node] = proposed
            self._pending.pop(node, None)
            moved.append(node)
        return moved

    def propose(self, matrix: RttMatrix, *, cloud: Callable[[str], bool]) -> dict[str, Place]:
        """Every measured node's proposed place (nothing is adopted)."""
        nodes = matrix.nodes
        measured = matrix.measured()
        partitions = layers(matrix.ms(), [layer.max_rtt_ms for layer in self.layers])
        names: list[dict[str, str]] = []
        for k, (layer, partition) in enumerate(zip(self.layers, partitions, strict=True)):
            groups: dict[int, list[str]] = defaultdict(list)
            for i, g in enumerate(partition):
                if measured[i]:
                    groups[g].append(nodes[i])
            names.append(self._name(k, layer.name, list(groups.values())))
        sites: dict[str, list[str]] = defaultdict(list)
        for node, site in names[0].items():
            sites[site].append(node)
        tiers = {
            site: CLOUD if 2 * sum(1 for n in members if cloud(n)) >= len(members) else EDGE
            for site, members in sites.items()
        }
        return {
            node: Place(tuple(layer_names[node] for layer_names in names), tiers[site])
            for node, site in names[0].items()
        }

    def _name(self, k: int, layer: str, groups: list[list[str]]) -> dict[str, str]:
        """node -> its group's name in layer ``k`` (see the module for the rules)."""
        named: dict[int, str] = {}
        taken: set[str] = set()
        for source in (self._places, {n: p.place for n, p in self._pending.items()}):
            votes: list[tuple[int, str, str, int]] = []
            for gi, members in enumerate(groups):
                if gi in named:
                    continue
                count: dict[str, int] = defaultdict(int)
                for n in members:
                    if (p := source.get(n)) is not None:
                        count[p.groups[k]] += 1
                votes += [(-c, name, members[0], gi) for name, c in count.items()]
            for _, name, _, gi in sorted(votes):
                if gi not in named and name not in taken:
                    named[gi] = name
                    taken.add(name)
        held = {p.groups[k] for p in self._places.values()}
        held |= {p.place.groups[k] for p in self._pending.values()}
        fresh = (f"{layer}-{n}" for n in range(len(held) + len(groups) + 1))
        free = (name for name in fresh if name not in held and name not in taken)
        out: dict[str, str] = {}
        for gi, members in enumerate(groups):
            name = named.get(gi) or next(free)
            for n in members:
                out[n] = name
        return out


def label_patch(current: Mapping[str, str], wanted: Mapping[str, str]) -> dict[str, str | None]:
    """The labels to merge-patch so that ``topology.lasched.io/*`` is ``wanted``, exactly.

    lasched owns that prefix: a key under it that is not wanted (a layer no longer
    configured) is removed (None); labels outside it are never touched. Empty: nothing to do.
    """
    out: dict[str, str | None] = {
        k: None for k in current if k.startswith(LABEL_PREFIX) and k not in wanted
    }
    out.update({k: v for k, v in wanted.items() if current.get(k) != v})
    return out
