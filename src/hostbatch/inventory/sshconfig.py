"""A reader for OpenSSH client config (``~/.ssh/config``): Host blocks, first value wins.

Understood keys: HostName, User, Port, IdentityFile, ProxyJump (others are ignored, as
are ``Match`` blocks). ``Include`` is followed (relative paths from ``~/.ssh``).
As an inventory source, every ``Host`` alias without wildcards is a host of group
``ssh_config``; for every other host, these values fill in what the inventory left unset.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from hostbatch.errors import InventoryError
from hostbatch.inventory.records import HostDefinition, LoadResult, Located

# ssh_config keyword -> hostbatch key
KEYWORDS = {
    "hostname": "hostname",
    "user": "username",
    "port": "port",
    "identityfile": "key_file",
    "proxyjump": "proxy_jump",
}
GROUP = "ssh_config"
_LINE = re.compile(r"^\s*(?P<key>\S+?)\s*(?:=|\s)\s*(?P<value>.*?)\s*$")


@dataclass
class _Block:
    patterns: list[str]
    line: int
    path: str
    options: dict[str, Located] = field(default_factory=dict)

    def matches(self, alias: str) -> bool:
        matched = False
        for pattern in self.patterns:
            negated = pattern.startswith("!")
            if fnmatch.fnmatchcase(alias, pattern.lstrip("!")):
                if negated:
                    return False
                matched = True
        return matched


@dataclass
class SSHConfig:
    """Parsed client config; :meth:`lookup` gives an alias's values like ``ssh -G`` would."""

    blocks: list[_Block] = field(default_factory=list)

    def lookup(self, alias: str) -> dict[str, Located]:
        values: dict[str, Located] = {}
        for block in self.blocks:
            if block.matches(alias):
                for key, located in block.options.items():
                    values.setdefault(key, located)
        if "hostname" in values and "%h" in values["hostname"].value:
            located = values["hostname"]
            values["hostname"] = Located(
                located.value.replace("%h", alias), located.path, located.line
            )
        return values

    def aliases(self) -> list[tuple[str, _Block]]:
        """Host aliases without wildcards, each with the block that names it."""
        found: dict[str, _Block] = {}
        for block in self.blocks:
            for pattern in block.patterns:
                if not any(c in pattern for c in "*?!") and pattern not in found:
                    found[pattern] = block
        return list(found.items())


def parse(path: Path, *, _depth: int = 0) -> SSHConfig:
    """Parse *path*; a missing file is an empty config."""
    config = SSHConfig()
    if not path.exists():
        return config
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"cannot read ssh config: {exc}", path=str(path)) from None
    preamble = _Block(["*"], 0, str(path))  # options before any Host
    config.blocks.append(preamble)
    current: _Block | None = preamble
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise InventoryError(f"cannot parse {raw!r}", path=str(path), line=number)
        key, value = match.group("key").lower(), match.group("value")
        words = shlex.split(value) if value else []
        where = Located("", str(path), number)
        current = _apply(config, current, key, words, where, depth=_depth)
    return config


def _apply(
    config: SSHConfig,
    current: _Block | None,
    key: str,
    words: list[str],
    where: Located,
    *,
    depth: int,
) -> _Block | None:
    """Apply one config line; returns the block later lines belong to."""
    if key == "host":
        block = _Block(words, where.line or 0, where.path)
        config.blocks.append(block)
        return block
    if key == "match":
        return None  # Match blocks are not supported; skip their options
    if key == "include" and depth < 8:
        for word in words:
            for included in _include_paths(word):
                config.blocks.extend(parse(included, _depth=depth + 1).blocks)
    elif current is not None and key in KEYWORDS and words:
        value = str(Path(words[0]).expanduser()) if key == "identityfile" else words[0]
        current.options.setdefault(KEYWORDS[key], Located(value, where.path, where.line))
    return current


def _include_paths(word: str) -> list[Path]:
    pattern = Path(word).expanduser()
    if not pattern.is_absolute():
        pattern = Path("~/.ssh").expanduser() / pattern
    return sorted(pattern.parent.glob(pattern.name))


def load_ssh_config(path: Path, result: LoadResult) -> None:
    """Every non-wildcard ``Host`` alias becomes a host of group ``ssh_config``."""
    config = parse(path)
    result.group_order.append(GROUP)
    for alias, block in config.aliases():
        values = config.lookup(alias)
        values.setdefault("hostname", Located(alias, block.path, block.line))
        result.definitions.append(
            HostDefinition(alias, block.path, block.line, groups=[GROUP], layers=[values])
        )
