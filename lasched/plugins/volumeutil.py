"""The matching rules kube-scheduler shares with the PV controller
(``k8s.io/component-helpers/storage/volume``): which free PersistentVolume a
claim would bind to on a node, and whether a volume's node affinity admits a
node. Pure functions of decoded objects (lasched/model/volume.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lasched.model import selector
from lasched.model.volume import Claim, Volume
from lasched.plugins.nodeaffinity import match_expression


def node_affinity_matches(volume: Volume, node_labels: Mapping[str, str]) -> bool:
    """A PV's required node affinity against a node's labels (``CheckNodeAffinity``):
    terms ORed, a term's expressions ANDed; fields are not labels, so a term with
    ``matchFields`` matches nothing, as upstream's check on labels alone."""
    terms = volume.node_terms
    if terms is None:
        return True
    for term in terms:
        exprs = term.get("matchExpressions") or ()
        if term.get("matchFields") or not exprs:
            continue
        if all(isinstance(e, Mapping) and match_expression(e, node_labels) for e in exprs):
            return True
    return False


def volume_matches_claim(volume: Volume, claim: Claim, node_labels: Mapping[str, str]) -> bool:
    """Could ``claim`` bind to the free ``volume`` on a node with these labels?

    ``FindMatchingVolume``'s checks for a volume not pre-bound to the claim:
    Available, no claimRef, the claim's selector, the same class, volume mode
    and node affinity, every access mode the claim asks for, enough capacity.
    """
    if volume.deleting or volume.volume_mode != claim.volume_mode:
        return False
    if volume.phase != "Available" or volume.claim_ref is not None:
        return False
    if claim.selector is not None and not selector.matches(claim.selector, volume.labels):
        return False
    if volume.storage_class != claim.storage_class:
        return False
    if not node_affinity_matches(volume, node_labels):
        return False
    if not set(claim.access_modes) <= set(volume.access_modes):
        return False
    return volume.capacity >= claim.request


def find_matching_volume(
    claim: Claim,
    volumes: Sequence[Volume],
    node_labels: Mapping[str, str],
    excluded: set[str],
) -> Volume | None:
    """The volume ``claim`` would bind to on the node: one pre-bound to it, else the
    smallest that matches (``FindMatchingVolume`` on the scheduler's path)."""
    best: Volume | None = None
    for v in volumes:
        if v.key in excluded:
            continue
        if v.volume_mode != claim.volume_mode or v.deleting:
            continue
        if v.bound_to(claim):
            if v.capacity < claim.request:
                continue
            return v if node_affinity_matches(v, node_labels) else None
        if volume_matches_claim(v, claim, node_labels) and (
            best is None or v.capacity < best.capacity
        ):
            best = v
    return best
