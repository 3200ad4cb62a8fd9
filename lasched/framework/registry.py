"""The plugin registry, and which plugin of a profile runs at which extension point.

A :data:`Registry` maps a plugin's name, as kube-scheduler spells it, to a
factory that builds the plugin from its args and a handle on what the
profile shares (the in-tree one is ``lasched.profiles.IN_TREE``). A profile
names its plugins as a KubeSchedulerConfiguration does, and :func:`place`
follows kube-scheduler's rules (``mergePlugins`` of its config API,
``NewFramework`` and ``expandMultiPointPlugins`` of its runtime), so a
configuration means here what it means there:

* The default plugins form the ``multiPoint`` set, in order. ``disabled`` at
  multiPoint takes defaults out (``"*"``: all of them); ``enabled`` appends
  plugins, or re-configures a default in its place (its weight).
* A plugin of the multiPoint set runs at every extension point whose
  Protocol it implements (lasched.framework.interface; kube-scheduler's
  ``getExtensionPoints``), in multiPoint order, unless disabled at that
  point (``"*"``: no multiPoint plugin runs there).
* A plugin enabled at one point must implement it and runs there. If it also
  came through multiPoint, the explicit entry wins and goes first; the other
  explicit entries follow the multiPoint ones.
* A Score plugin's weight is its ``score`` entry's, else its multiPoint
  entry's; none, or 0, means 1.

Every plugin is built once per profile, however many points it serves; a
factory raises ValueError for args it cannot take. A name the registry does
not know, a plugin enabled where it cannot run, one enabled twice at a point,
or args refused is a :class:`RegistryError` naming the field it came from: a
configuration never silently loses a plugin.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lasched.framework.interface import (
    BindPlugin,
    FilterPlugin,
    PermitPlugin,
    Plugin,
    PostFilterPlugin,
    PreBindPlugin,
    PreEnqueuePlugin,
    PreFilterPlugin,
    PreScorePlugin,
    QueueSortPlugin,
    ReservePlugin,
    ScorePlugin,
)

H = TypeVar("H")

Args = Mapping[str, Any]
"""A plugin's ``pluginConfig`` args, as configured (empty when none)."""

Factory = Callable[[Args, H], Plugin]
"""Builds one profile's instance of a plugin from its args and the profile's handle."""

Registry = Mapping[str, Factory[H]]
"""Plugin name -> factory. Adding a plugin to lasched is one entry."""


class RegistryError(ValueError):
    """A profile's plugins cannot be placed; the message names the field."""


class ExtensionPoint(enum.Enum):
    """The extension points a profile places plugins at, by their configuration names."""

    PRE_ENQUEUE = "preEnqueue"
    QUEUE_SORT = "queueSort"
    PRE_FILTER = "preFilter"
    FILTER = "filter"
    POST_FILTER = "postFilter"
    PRE_SCORE = "preScore"
    SCORE = "score"
    RESERVE = "reserve"
    PERMIT = "permit"
    PRE_BIND = "preBind"
    BIND = "bind"


_PROTOCOLS: Mapping[ExtensionPoint, type] = {
    ExtensionPoint.PRE_ENQUEUE: PreEnqueuePlugin,
    ExtensionPoint.QUEUE_SORT: QueueSortPlugin,
    ExtensionPoint.PRE_FILTER: PreFilterPlugin,
    ExtensionPoint.FILTER: FilterPlugin,
    ExtensionPoint.POST_FILTER: PostFilterPlugin,
    ExtensionPoint.PRE_SCORE: PreScorePlugin,
    ExtensionPoint.SCORE: ScorePlugin,
    ExtensionPoint.RESERVE: ReservePlugin,
    ExtensionPoint.PERMIT: PermitPlugin,
    ExtensionPoint.PRE_BIND: PreBindPlugin,
    ExtensionPoint.BIND: BindPlugin,
}


def extension_points(plugin: Plugin) -> tuple[ExtensionPoint, ...]:
    """The points whose Protocol ``plugin`` implements, in the order of the cycle."""
    return tuple(p for p, proto in _PROTOCOLS.items() if isinstance(plugin, proto))


@dataclass(frozen=True, slots=True)
class PluginRef:
    """One ``{name, weight}`` entry of an enabled or disabled list."""

    name: str
    weight: int | None = None
    source: str = ""
    """Where it was configured (``profiles[0].plugins.score.enabled[1]``), for errors."""


@dataclass(frozen=True, slots=True)
class PluginSet:
    """One extension point's ``enabled`` and ``disabled`` lists (``"*"``: every default)."""

    enabled: tuple[PluginRef, ...] = ()
    disabled: tuple[PluginRef, ...] = ()

    def disabled_names(self) -> frozenset[str]:
        return frozenset(r.name for r in self.disabled)


@dataclass(frozen=True, slots=True)
class PluginsConfig:
    """A profile's ``plugins``: the multiPoint set and each extension point's set."""

    multi_point: PluginSet = PluginSet()
    points: Mapping[ExtensionPoint, PluginSet] = field(default_factory=dict)

    def at(self, point: ExtensionPoint) -> PluginSet:
        return self.points.get(point, _EMPTY)

    def refs(self) -> Iterable[PluginRef]:
        """Every entry, enabled and disabled, multiPoint first."""
        yield from self.multi_point.enabled
        yield from self.multi_point.disabled
        for s in self.points.values():
            yield from s.enabled
            yield from s.disabled


_EMPTY = PluginSet()


def merge(defaults: Sequence[PluginRef], custom: PluginsConfig) -> PluginsConfig:
    """The profile's plugins over the defaults (kube-scheduler's ``mergePlugins``).

    The defaults are a multiPoint set; the profile's own multiPoint set is
    merged into it, and its per-point sets are kept as they are.
    """
    return PluginsConfig(
        multi_point=_merge_set(PluginSet(enabled=tuple(defaults)), custom.multi_point),
        points=dict(custom.points),
    )


def _merge_set(default: PluginSet, custom: PluginSet) -> PluginSet:
    disabled = custom.disabled_names() | default.disabled_names()
    # A custom entry of a default's name replaces it in place (the last such entry, as
    # kube-scheduler's map keeps); every other custom entry is appended.
    custom_at = {r.name: i for i, r in enumerate(custom.enabled)}
    replaced: set[int] = set()
    enabled: list[PluginRef] = []
    if "*" not in disabled:
        for ref in default.enabled:
            if ref.name in disabled:
                continue
            i = custom_at.get(ref.name)
            if i is not None:
                replaced.add(i)
            enabled.append(ref if i is None else custom.enabled[i])
    enabled.extend(r for i, r in enumerate(custom.enabled) if i not in replaced)
    return PluginSet(enabled=tuple(enabled), disabled=(*custom.disabled, *default.disabled))


@dataclass(frozen=True, slots=True)
class Placement:
    """A profile's plugins, built once each, and where they run."""

    plugins: Mapping[str, Plugin]
    points: Mapping[ExtensionPoint, tuple[Plugin, ...]]
    weights: Mapping[str, int]
    """Score plugin name -> weight."""

    def at(self, point: ExtensionPoint) -> tuple[Plugin, ...]:
        return self.points.get(point, ())


def quoted(name: str) -> str:
    """A plugin name as errors show it: ``"NodePorts"``."""
    return json.dumps(name)


def where(ref: PluginRef) -> str:
    """The prefix that names the field an entry came from, if it came from one."""
    return f"{ref.source}.name: " if ref.source else ""


def unknown_plugin(ref: PluginRef, known: Iterable[str]) -> str:
    return f"{where(ref)}unknown plugin {quoted(ref.name)}; lasched has: {', '.join(sorted(known))}"


def place(
    registry: Registry[H],
    handle: H,
    defaults: Sequence[PluginRef],
    custom: PluginsConfig,
    args: Mapping[str, Args] | None = None,
) -> Placement:
    """Build the profile's plugins from ``registry`` and place each at its points.

    ``defaults`` is the default plugin list (the multiPoint set before the
    profile's own); ``args`` holds each plugin's ``pluginConfig`` args.
    """
    plugins = merge(defaults, custom)
    wanted: dict[str, PluginRef] = {}
    for ref in (
        *plugins.multi_point.enabled,
        *(r for s in plugins.points.values() for r in s.enabled),
    ):
        if ref.name not in registry:
            raise RegistryError(unknown_plugin(ref, registry))
        wanted.setdefault(ref.name, ref)
    built: dict[str, Plugin] = {}
    for name, ref in wanted.items():
        try:
            plugin = registry[name]((args or {}).get(name, {}), handle)
        except ValueError as e:  # a factory's word on its args
            raise RegistryError(f"the args of plugin {quoted(name)}: {e}") from e
        if plugin.name != name:
            raise RegistryError(
                f"{where(ref)}the factory of {quoted(name)} built a plugin named "
                f"{quoted(plugin.name)}"
            )
        built[name] = plugin
    implements = {name: extension_points(p) for name, p in built.items()}
    points = {
        point: tuple(built[n] for n in _names_at(point, plugins, implements))
        for point in ExtensionPoint
    }
    weights: dict[str, int] = {}
    for ref in (*plugins.at(ExtensionPoint.SCORE).enabled, *plugins.multi_point.enabled):
        if ExtensionPoint.SCORE in implements[ref.name] and ref.name not in weights:
            weights[ref.name] = ref.weight or 1
    return Placement(plugins=built, points=points, weights=weights)


def _names_at(
    point: ExtensionPoint,
    plugins: PluginsConfig,
    implements: Mapping[str, tuple[ExtensionPoint, ...]],
) -> list[str]:
    """The plugins that run at ``point``, in order (kube-scheduler's three parts)."""
    own = plugins.at(point)
    explicit: list[str] = []
    for ref in own.enabled:
        if point not in implements[ref.name]:
            does = ", ".join(p.value for p in implements[ref.name]) or "no extension point"
            raise RegistryError(
                f"{where(ref)}plugin {quoted(ref.name)} cannot run at {point.value}; "
                f"it implements {does}"
            )
        if ref.name in explicit:
            raise RegistryError(
                f"{where(ref)}plugin {quoted(ref.name)} is enabled twice at {point.value}"
            )
        explicit.append(ref.name)
    disabled = own.disabled_names()
    if "*" in disabled:
        return explicit
    overridden: list[str] = []
    multi: list[str] = []
    for ref in plugins.multi_point.enabled:
        if point not in implements[ref.name] or ref.name in disabled:
            continue
        if ref.name in explicit:
            if ref.name not in overridden:
                overridden.append(ref.name)
            continue
        if ref.name in multi:
            raise RegistryError(
                f"{where(ref)}plugin {quoted(ref.name)} is enabled twice through multiPoint"
            )
        multi.append(ref.name)
    first = [n for n in explicit if n in overridden]
    last = [n for n in explicit if n not in overridden]
    return [*first, *multi, *last]
