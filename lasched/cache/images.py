"""How many nodes hold each image, kept as nodes come, change and go.

kube-scheduler's cache keeps ``imageStates``: per image name, its size and
the set of nodes whose ``status.images`` list it; the snapshot hands
ImageLocality each image's ``NumNodes`` and the number of nodes. Recounting
that per scheduling cycle would cost nodes x images; here the counts follow
each node event instead, so a cycle reads them in O(1) per image.

Invariant: :meth:`ImageStates.add` and :meth:`ImageStates.remove` are called
in pairs with the same Node object (the cache removes a node's old object
before adding its new one), so ``node_count`` is the number of nodes that
exist and each name's count is the number of those nodes that list it. A
name's size is the one the first node to list it reported, and it is
forgotten when the last such node goes, as in kube-scheduler.
"""

from __future__ import annotations

from lasched.model.node import Node


class ImageStates:
    """Per image name: its size and how many nodes hold it; and how many nodes exist."""

    __slots__ = ("_states", "node_count")

    def __init__(self) -> None:
        self._states: dict[str, list[int]] = {}  # name -> [size in bytes, nodes holding it]
        self.node_count = 0

    def add(self, node: Node) -> None:
        """Count ``node`` and each image it lists."""
        self.node_count += 1
        states = self._states
        for name, size in node.images.items():
            state = states.get(name)
            if state is None:
                states[name] = [size, 1]
            else:
                state[1] += 1

    def remove(self, node: Node) -> None:
        """Undo :meth:`add` of the same Node object."""
        self.node_count -= 1
        states = self._states
        for name in node.images:
            state = states[name]
            state[1] -= 1
            if not state[1]:
                del states[name]

    def get(self, name: str) -> tuple[int, int] | None:
        """(size, number of nodes holding it) of image ``name``; None if no node has it."""
        state = self._states.get(name)
        return None if state is None else (state[0], state[1])

    def clear(self) -> None:
        self._states.clear()
        self.node_count = 0

    def __len__(self) -> int:
        return len(self._states)
