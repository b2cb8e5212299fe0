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
from hostbatch.inventory.records import HostDefinition, LoadResult, Located, quote_line

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


MAX_INCLUDE_DEPTH = 16  # OpenSSH's READCONF_MAX_DEPTH


@dataclass
class _ParseState:
    """Shared by one parse and its Includes: the chain of files being read (cycles), and
    each file's blocks once read (a file included twice is read once: linear, not 2^depth)."""

    chain: list[Path] = field(default_factory=list)
    parsed: dict[Path, list[_Block]] = field(default_factory=dict)


def parse(path: Path, *, _state: _ParseState | None = None) -> SSHConfig:
    """Parse *path*; a missing file is an empty config."""
    state = _state or _ParseState()
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
    state.chain.append(path.resolve())
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = Located("", str(path), number)
        key, words = _split_line(line, where)
        current = _apply(config, current, key, words, where, state=state)
    state.chain.pop()
    return config


def _split_line(line: str, where: Located) -> tuple[str, list[str]]:
    """``Keyword value...`` -> (keyword in lower case, the value's words)."""
    match = _LINE.match(line)
    if not match:
        raise InventoryError(f"cannot parse {quote_line(line)}", path=where.path, line=where.line)
    value = match.group("value")
    try:
        words = shlex.split(value) if value else []
    except ValueError as exc:  # No closing quotation
        raise InventoryError(
            f"{exc}: {quote_line(line)}", path=where.path, line=where.line
        ) from None
    return match.group("key").lower(), words


def _apply(
    config: SSHConfig,
    current: _Block | None,
    key: str,
    words: list[str],
    where: Located,
    *,
    state: _ParseState,
) -> _Block | None:
    """Apply one config line; returns the block later lines belong to."""
    if key == "host":
        block = _Block(words, where.line or 0, where.path)
        config.blocks.append(block)
        return block
    if key == "match":
        return None  # Match blocks are not supported; skip their options
    if key == "include":
        for word in words:
            for included in _include_paths(word):
                _add_unseen(config.blocks, _included_blocks(included, where, state))
    elif current is not None and key in KEYWORDS and words:
        value = str(Path(words[0]).expanduser()) if key == "identityfile" else words[0]
        current.options.setdefault(KEYWORDS[key], Located(value, where.path, where.line))
    return current


def _included_blocks(included: Path, where: Located, state: _ParseState) -> list[_Block]:
    """The blocks of an Included file; a cycle or nesting deeper than OpenSSH's is an error."""
    resolved = included.resolve()
    if resolved in state.chain:
        raise InventoryError(
            f"Include cycle: {included} is already being read", path=where.path, line=where.line
        )
    if len(state.chain) > MAX_INCLUDE_DEPTH:
        raise InventoryError(
            f"Include nested deeper than {MAX_INCLUDE_DEPTH} levels (as OpenSSH refuses)",
            path=where.path,
            line=where.line,
        )
    if resolved not in state.parsed:
        state.parsed[resolved] = parse(included, _state=state).blocks
    return state.parsed[resolved]


def _add_unseen(blocks: list[_Block], more: list[_Block]) -> None:
    """Append the blocks not already there (first value wins, so a repeat changes nothing)."""
    seen = {id(block) for block in blocks}
    blocks.extend(block for block in more if id(block) not in seen)


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
