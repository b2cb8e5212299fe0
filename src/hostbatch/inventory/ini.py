"""INI inventories, read with configparser.

Folder form (the seed's): a directory with one ``<group>.ini`` per group. Each section is
a host; ``[DEFAULT]`` applies to every host of that file::

    # inventory/web_clusters.ini
    [DEFAULT]
    username = deploy
    [web01]
    hostname = 10.0.0.11
    port = 22

Single-file form: host sections list their groups; ``[group:NAME]`` sections carry values
shared by the group's hosts; ``[DEFAULT]`` applies to every host::

    [DEFAULT]
    username = ops
    [group:web]
    port = 2222
    [web01]
    hostname = 10.0.0.11
    groups = web, frontend
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass
from pathlib import Path

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
    mask_secrets,
    quote_line,
    warn_if_exposed,
)

_NO_DEFAULT_SECTION = "\x00hostbatch-no-default"
_SECTION_LINE = re.compile(r"^\[(?P<name>[^\]]+)\]\s*$")
_KEY_LINE = re.compile(r"^(?P<key>[^\s=:#;\[][^=:]*?)\s*[=:]")
GROUP_PREFIX = "group:"


@dataclass(slots=True)
class _Section:
    """One section as plain data: where its header is, and (key, value, line) per key."""

    line: int | None
    items: list[tuple[str, str, int | None]]


def _line_index(text: str) -> dict[tuple[str, str | None], int]:
    """Map (section, key) and (section, None) to 1-based line numbers."""
    index: dict[tuple[str, str | None], int] = {}
    section = ""
    # configparser reads through io.StringIO: lines end at "\n" only (not at \x0b, \x85...)
    for number, line in enumerate(text.split("\n"), start=1):
        first = line[:1]
        if not first or first in " \t#;":
            continue  # blank, comment or continuation: no key starts here
        if first == "[":
            header = _SECTION_LINE.match(line.strip())
            if header:
                section = header.group("name").strip()
                index.setdefault((section, None), number)
                continue
        key = _KEY_LINE.match(line)
        if key:
            index.setdefault((section, key.group("key").strip().lower()), number)
    return index


def _read(path: Path) -> dict[str, _Section]:
    """Parse *path* with configparser into plain sections; syntax errors are file:line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"cannot read inventory file: {exc}", path=str(path)) from None
    parser = configparser.ConfigParser(
        interpolation=None, default_section=_NO_DEFAULT_SECTION, strict=True
    )
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        raise _syntax_error(exc, path, text) from None
    lines = _line_index(text)
    sections: dict[str, _Section] = {}
    for name in parser.sections():
        items = [
            (key, value, lines.get((name, key.lower())))
            for key, value in parser.items(name, raw=True)
        ]
        sections[name] = _Section(lines.get((name, None)), items)
        # frees the section now: the parser and its section proxies refer to each other,
        # so they would otherwise wait for the (paused) cyclic collector
        parser.remove_section(name)
    return sections


def _syntax_error(exc: configparser.Error, path: Path, text: str) -> InventoryError:
    """Any configparser error as ``file:line: message``: offending line short, secrets masked."""
    line: int | None = getattr(exc, "lineno", None)
    if isinstance(exc, configparser.ParsingError) and getattr(exc, "errors", None):
        line = exc.errors[0][0]
    content = _nth_line(text, line) if line else ""
    if content.lstrip().startswith("[") and "]" not in content:
        message = f"section header without ']': {quote_line(content)}"
    elif isinstance(exc, configparser.MissingSectionHeaderError):
        message = f"no [section] header before {quote_line(content)} (every key belongs to one)"
    elif isinstance(exc, configparser.ParsingError):
        message = f"expected 'key = value' or '[section]', got {quote_line(content)}"
    else:
        first = (str(exc) or type(exc).__name__).splitlines()[0]
        first = re.sub(r"^While reading from '[^']*' \[line\s*\d+\]: ", "", first)
        message = mask_secrets(clip(first, QUOTE_LIMIT * 2))
    return InventoryError(f"syntax error: {message}", path=str(path), line=line)


def _nth_line(text: str, number: int) -> str:
    """Line *number* (1-based) of *text*, without splitting the whole text."""
    start = 0
    for _ in range(number - 1):
        start = text.find("\n", start) + 1
        if start == 0:
            return ""
    end = text.find("\n", start)
    return text[start : end if end >= 0 else len(text)]


def _layer(section: _Section, path: Path, warnings: list[str]) -> tuple[Layer, list[str]]:
    """A section's canonical values, and its ``groups =`` list if it has one."""
    layer: Layer = {}
    groups: list[str] = []
    source = str(path)
    for raw_key, value, line in section.items:
        if raw_key.lower() == "groups":
            groups = [g.strip() for g in re.split(r"[,\s]+", value) if g.strip()]
            continue
        located = Located(value.strip(), source, line)
        key = canonical_key(raw_key, located, warnings)
        if key is not None:
            layer[key] = located
    return layer, groups


def _holds_secrets(sections: dict[str, _Section]) -> bool:
    return any(key.lower() in SECRET_KEYS for s in sections.values() for key, _, _ in s.items)


def load_group_file(path: Path, result: LoadResult) -> None:
    """Load one ``<group>.ini`` of the folder form into *result*."""
    sections = _read(path)
    group = path.stem
    result.group_order.append(group)
    warn_if_exposed(path, _holds_secrets(sections), result.warnings)
    defaults: Layer = {}
    if "DEFAULT" in sections:
        defaults, _ = _layer(sections["DEFAULT"], path, result.warnings)
    for name, section in sections.items():
        if name == "DEFAULT":
            continue
        own, extra_groups = _layer(section, path, result.warnings)
        result.definitions.append(
            HostDefinition(
                name=name.strip(),
                path=str(path),
                line=section.line,
                groups=[group, *[g for g in extra_groups if g != group]],
                layers=[own, defaults],
            )
        )


def load_folder(path: Path, result: LoadResult) -> None:
    """Load every ``*.ini`` in *path*, in name order; each file is one group."""
    files = sorted(path.glob("*.ini"))
    for file in files:
        load_group_file(file, result)


def load_single_file(path: Path, result: LoadResult) -> None:
    """Load the single-file form: host sections, ``[group:NAME]`` sections, ``[DEFAULT]``."""
    sections = _read(path)
    warn_if_exposed(path, _holds_secrets(sections), result.warnings)
    defaults: Layer = {}
    group_layers: dict[str, Layer] = {}
    hosts: list[tuple[str, _Section]] = []
    for name, section in sections.items():
        if name == "DEFAULT":
            defaults, _ = _layer(section, path, result.warnings)
        elif name.lower().startswith(GROUP_PREFIX):
            group = name[len(GROUP_PREFIX) :].strip()
            group_layers[group], _ = _layer(section, path, result.warnings)
            result.group_order.append(group)
        else:
            hosts.append((name, section))
    for name, section in hosts:
        own, groups = _layer(section, path, result.warnings)
        result.definitions.append(
            HostDefinition(
                name=name.strip(),
                path=str(path),
                line=section.line,
                groups=groups,
                layers=[own, *[group_layers.get(g, {}) for g in groups], defaults],
            )
        )
