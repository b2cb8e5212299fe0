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


def _line_index(text: str) -> dict[tuple[str, str | None], int]:
    """Map (section, key) and (section, None) to 1-based line numbers."""
    index: dict[tuple[str, str | None], int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _SECTION_LINE.match(line.strip())
        if header:
            section = header.group("name").strip()
            index.setdefault((section, None), number)
            continue
        key = _KEY_LINE.match(line)
        if key:
            index.setdefault((section, key.group("key").strip().lower()), number)
    return index


def _parse(path: Path) -> tuple[configparser.ConfigParser, dict[tuple[str, str | None], int]]:
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
    return parser, _line_index(text)


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


def _layer(
    parser: configparser.ConfigParser,
    section: str,
    path: Path,
    lines: dict[tuple[str, str | None], int],
    warnings: list[str],
) -> tuple[Layer, list[str]]:
    """A section's canonical values, and its ``groups =`` list if it has one."""
    layer: Layer = {}
    groups: list[str] = []
    for raw_key, value in parser.items(section, raw=True):
        located = Located(value.strip(), str(path), lines.get((section, raw_key.lower())))
        if raw_key.lower() == "groups":
            groups = [g.strip() for g in re.split(r"[,\s]+", value) if g.strip()]
            continue
        key = canonical_key(raw_key, located, warnings)
        if key is not None:
            layer[key] = located
    return layer, groups


def _holds_secrets(parser: configparser.ConfigParser) -> bool:
    return any(
        key in SECRET_KEYS
        for section in parser.sections()
        for key, _ in parser.items(section, raw=True)
    )


def load_group_file(path: Path, result: LoadResult) -> None:
    """Load one ``<group>.ini`` of the folder form into *result*."""
    parser, lines = _parse(path)
    group = path.stem
    result.group_order.append(group)
    warn_if_exposed(path, _holds_secrets(parser), result.warnings)
    defaults: Layer = {}
    if parser.has_section("DEFAULT"):
        defaults, _ = _layer(parser, "DEFAULT", path, lines, result.warnings)
    for section in parser.sections():
        if section == "DEFAULT":
            continue
        own, extra_groups = _layer(parser, section, path, lines, result.warnings)
        result.definitions.append(
            HostDefinition(
                name=section.strip(),
                path=str(path),
                line=lines.get((section, None)),
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
    parser, lines = _parse(path)
    warn_if_exposed(path, _holds_secrets(parser), result.warnings)
    defaults: Layer = {}
    group_layers: dict[str, Layer] = {}
    hosts: list[str] = []
    for section in parser.sections():
        if section == "DEFAULT":
            defaults, _ = _layer(parser, section, path, lines, result.warnings)
        elif section.lower().startswith(GROUP_PREFIX):
            name = section[len(GROUP_PREFIX) :].strip()
            group_layers[name], _ = _layer(parser, section, path, lines, result.warnings)
            result.group_order.append(name)
        else:
            hosts.append(section)
    for section in hosts:
        own, groups = _layer(parser, section, path, lines, result.warnings)
        result.definitions.append(
            HostDefinition(
                name=section.strip(),
                path=str(path),
                line=lines.get((section, None)),
                groups=groups,
                layers=[own, *[group_layers.get(g, {}) for g in groups], defaults],
            )
        )
