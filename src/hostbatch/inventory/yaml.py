"""YAML inventories.

Two shapes are accepted.

The netmiko list style our users already keep (each top-level key is a group; a host is
named by ``name``, else by its ``host``/``ip``)::

    routers:
      - {device_type: cisco_ios, ip: 10.0.0.1, username: admin, password: secret}

The structured form (host over group over defaults)::

    defaults: {username: ops}
    groups:
      web: {port: 2222}                    # values shared by the group's hosts
    hosts:
      web01: {hostname: 10.0.0.11, groups: [web]}

A group's entry under ``groups`` may also hold ``hosts:``, a list of names defined under
the top-level ``hosts:``. In the netmiko style a group may also be a mapping of host name
to values.
"""

from __future__ import annotations

from pathlib import Path

import yaml as pyyaml

from hostbatch.errors import InventoryError
from hostbatch.inventory.patterns import clip
from hostbatch.inventory.records import (
    QUOTE_LIMIT,
    SECRET_KEYS,
    HostDefinition,
    Layer,
    LoadResult,
    Located,
    canonical_key,
    warn_if_exposed,
)

STRUCTURED_KEYS = frozenset({"defaults", "groups", "hosts"})


class _Reader:
    """Walks a composed YAML node tree, keeping line numbers for every value."""

    def __init__(self, path: Path, result: LoadResult) -> None:
        self.path = path
        self.result = result
        self.holds_secrets = False

    def fail(self, node: pyyaml.Node, message: str) -> InventoryError:
        return InventoryError(message, path=str(self.path), line=node.start_mark.line + 1)

    def scalar(self, node: pyyaml.Node, what: str) -> str:
        if not isinstance(node, pyyaml.ScalarNode):
            raise self.fail(node, f"{what} must be a single value, not a list or mapping")
        return str(node.value)

    def mapping(self, node: pyyaml.Node, what: str) -> list[tuple[str, pyyaml.Node, int]]:
        if isinstance(node, pyyaml.ScalarNode) and node.value in ("", "~", "null"):
            return []
        if not isinstance(node, pyyaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping (key: value)")
        return [
            (self.scalar(key, "a key"), value, key.start_mark.line + 1) for key, value in node.value
        ]

    def sequence(self, node: pyyaml.Node, what: str) -> list[pyyaml.Node]:
        if not isinstance(node, pyyaml.SequenceNode):
            raise self.fail(node, f"{what} must be a list")
        return list(node.value)

    def values(self, node: pyyaml.Node, what: str) -> tuple[Layer, list[str], str | None]:
        """A host's or group's values, its ``groups`` list and its ``name``."""
        return self.pair_values(self.mapping(node, what))

    def pair_values(
        self, pairs: list[tuple[str, pyyaml.Node, int]]
    ) -> tuple[Layer, list[str], str | None]:
        layer: Layer = {}
        groups: list[str] = []
        name: str | None = None
        for key, value, line in pairs:
            if key == "groups":
                items = value.value if isinstance(value, pyyaml.SequenceNode) else [value]
                groups = [self.scalar(item, "a group name") for item in items]
                continue
            if key == "name":
                name = self.scalar(value, "name")
                continue
            located = Located(self.scalar(value, f"'{key}'"), str(self.path), line)
            canonical = canonical_key(key, located, self.result.warnings)
            if canonical is not None:
                layer[canonical] = located
                self.holds_secrets |= canonical in SECRET_KEYS
        return layer, groups, name

    def add_host(
        self,
        name: str,
        node: pyyaml.Node,
        groups: list[str],
        outer: list[Layer],
        read: tuple[Layer, list[str], str | None] | None = None,
    ) -> None:
        own: Layer = {}
        own_groups: list[str] = []
        if read is not None:
            own, own_groups, _ = read
        elif not isinstance(node, pyyaml.ScalarNode):  # a bare name has no values
            own, own_groups, _ = self.values(node, f"host '{name}'")
        self.result.definitions.append(
            HostDefinition(
                name=name,
                path=str(self.path),
                line=node.start_mark.line + 1,
                groups=list(dict.fromkeys([*groups, *own_groups])),
                layers=[own, *outer],
            )
        )

    def add_host_list(self, node: pyyaml.Node, group: str | None, outer: list[Layer]) -> None:
        """A list of netmiko-style dicts, or of host names, or a mapping name -> values."""
        groups = [group] if group else []
        if isinstance(node, pyyaml.MappingNode):
            for name, value, _ in self.mapping(node, "hosts"):
                if isinstance(value, pyyaml.ScalarNode) and value.value not in ("", "~", "null"):
                    raise self.fail(value, f"host '{name}' must be a mapping of values")
                self.add_host(name, value, groups, outer)
            return
        for item in self.sequence(node, "hosts"):
            if isinstance(item, pyyaml.ScalarNode):
                self.add_host(str(item.value), item, groups, outer)
                continue
            read = self.values(item, "a host")
            layer, _, given = read
            host_name = given or (layer["hostname"].value if "hostname" in layer else None)
            if host_name is None:
                raise self.fail(item, "host has no 'name', 'host' or 'ip'")
            self.add_host(host_name, item, groups, outer, read)


def _structured(reader: _Reader, top: list[tuple[str, pyyaml.Node, int]]) -> None:
    sections = {key: node for key, node, _ in top}
    defaults: Layer = {}
    if "defaults" in sections:
        defaults, _, _ = reader.values(sections["defaults"], "defaults")
    group_layers: dict[str, Layer] = {}
    members: dict[str, list[str]] = {}  # host name -> groups that list it under hosts:
    groups = reader.mapping(sections["groups"], "groups") if "groups" in sections else []
    for group, node, _ in groups:
        reader.result.group_order.append(group)
        pairs = reader.mapping(node, f"group '{group}'")
        group_layers[group], _, _ = reader.pair_values([p for p in pairs if p[0] != "hosts"])
        for key, value, _ in pairs:
            if key == "hosts":
                for item in reader.sequence(value, f"group '{group}' hosts"):
                    members.setdefault(reader.scalar(item, "a host name"), []).append(group)
    before = len(reader.result.definitions)
    if "hosts" in sections:
        reader.add_host_list(sections["hosts"], None, [])
    defined = {d.name for d in reader.result.definitions[before:]}
    if missing := [name for name in members if name not in defined]:
        raise reader.fail(sections["groups"], f"group member '{missing[0]}' is not under hosts:")
    for definition in reader.result.definitions[before:]:
        definition.groups = list(
            dict.fromkeys([*definition.groups, *members.get(definition.name, [])])
        )
        outer = [group_layers.get(g, {}) for g in definition.groups]
        definition.layers = [definition.layers[0], *outer, defaults]


MAX_DEPTH = 100  # nesting of lists and mappings; an inventory needs about 5


class _DepthLimitedLoader(pyyaml.SafeLoader):
    """The pure-Python loader, refusing nesting deeper than MAX_DEPTH (not RecursionError)."""

    depth = 0

    def compose_node(self, parent: pyyaml.Node | None, index: int) -> pyyaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise pyyaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", mark
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _untagged(loader: type) -> type:
    """*loader* without implicit tag resolution: the reader looks at node kinds and string
    values only, and resolving a tag for every scalar was a third of a large load."""

    class Untagged(loader):  # type: ignore[misc]
        def resolve(self, kind: type, value: str | None, implicit: tuple[bool, bool]) -> str:
            return "tag:yaml.org,2002:str"

        def descend_resolver(self, current_node: object, current_index: object) -> None:
            return None

        def ascend_resolver(self) -> None:
            return None

    return Untagged


# libyaml (C) is ~20x faster and stops at its own nesting limit (1000 levels).
_LOADER: type = _untagged(getattr(pyyaml, "CSafeLoader", _DepthLimitedLoader))


def compose(text: str, path: Path, loader: type | None = None) -> pyyaml.Node | None:
    """The node tree of *text*; a syntax error or too deep nesting is an InventoryError."""
    try:
        return pyyaml.compose(text, Loader=loader or _LOADER)
    except pyyaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        problem = clip(str(exc.problem), QUOTE_LIMIT * 2)
        raise InventoryError(f"YAML syntax error: {problem}", path=str(path), line=line) from None
    except pyyaml.YAMLError as exc:
        message = clip(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise InventoryError(f"YAML error: {message}", path=str(path)) from None


def load_yaml(path: Path, result: LoadResult) -> None:
    """Load a YAML inventory (either shape) into *result*."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"cannot read inventory file: {exc}", path=str(path)) from None
    root = compose(text, path)
    if root is None:
        return
    reader = _Reader(path, result)
    if isinstance(root, pyyaml.SequenceNode):
        reader.add_host_list(root, None, [])
    else:
        top = reader.mapping(root, "the top level")
        if top and {key for key, _, _ in top} <= STRUCTURED_KEYS:
            _structured(reader, top)
        else:
            for group, node, _ in top:
                result.group_order.append(group)
                reader.add_host_list(node, group, [])
    warn_if_exposed(path, reader.holds_secrets, result.warnings)
