"""What the loaders produce before resolution: values that remember where they were written."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from hostbatch.errors import InventoryError
from hostbatch.inventory.patterns import clip
from hostbatch.logs import MASK

# Canonical keys. Aliases map the spellings users already have (netmiko dicts, ssh_config).
HOST_KEYS = frozenset(
    {
        "hostname",
        "port",
        "username",
        "password",
        "password_env",
        "key_file",
        "passphrase",
        "passphrase_env",
        "transport",
        "device_type",
        "secret",
        "secret_env",
        "proxy_jump",
        "become_password_env",
    }
)
ALIASES = {
    "ip": "hostname",
    "host": "hostname",
    "address": "hostname",
    "user": "username",
    "identity_file": "key_file",
    "key_filename": "key_file",
    "proxyjump": "proxy_jump",
    "enable_secret": "secret",
}
SECRET_KEYS = frozenset({"password", "passphrase", "secret"})
# Keys that structure the inventory rather than describe a host.
STRUCTURE_KEYS = frozenset({"groups", "name"})


@dataclass(frozen=True, slots=True)
class Located:
    """One value and the place it was written."""

    value: str
    path: str
    line: int | None = None

    @property
    def where(self) -> str:
        return self.path if self.line is None else f"{self.path}:{self.line}"


Layer = dict[str, Located]


@dataclass(slots=True)
class HostDefinition:
    """One definition of a host in one file.

    ``layers`` are ordered highest precedence first: the host's own values, then its
    groups' values (in the order the host lists them), then the file's defaults.
    """

    name: str
    path: str
    line: int | None
    groups: list[str] = field(default_factory=list)
    layers: list[Layer] = field(default_factory=list)

    @property
    def where(self) -> str:
        return self.path if self.line is None else f"{self.path}:{self.line}"

    def flattened(self) -> Layer:
        """Each key's winning value across the layers."""
        merged: Layer = {}
        for layer in self.layers:
            for key, located in layer.items():
                merged.setdefault(key, located)
        return merged


@dataclass
class LoadResult:
    """Everything one inventory source produced."""

    definitions: list[HostDefinition] = field(default_factory=list)
    group_order: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def canonical_key(
    raw_key: str, located: Located, warnings: list[str], *, extra: frozenset[str] = frozenset()
) -> str | None:
    """Map a key to its canonical name; warn about (and drop) keys hostbatch does not know."""
    key = raw_key.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key in HOST_KEYS or key in extra:
        check_single_line(key, located)
        return key
    warnings.append(f"{located.where}: unknown key '{clip(raw_key)}' ignored")
    return None


def warn_if_exposed(path: Path, holds_secrets: bool, warnings: list[str]) -> None:
    """Warn when a file holding passwords is readable by group or others."""
    if not holds_secrets or os.name != "posix":
        return
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.append(
            f"{path}: holds passwords and is readable by group or others "
            f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
        )


# A line that names a secret key, with the rest of the line (its value) to mask. The key
# must end the word, so ``password_env = VAR`` stays readable and ``enable_secret`` does not.
_SECRET_LINE = re.compile(
    r"(?im)\b(\w*(?:password|passphrase|passwd|secret))\b(\s*[=:]\s*|\s+)(\S.*)$"
)
QUOTE_LIMIT = 80


def mask_secrets(text: str) -> str:
    """*text* with the value of every ``password``/``passphrase``/``secret`` key masked.

    Not :func:`hostbatch.logs.redact`, which masks registered Secret values and one word
    after ``password=``: an inventory's own secrets are not Secrets yet when its errors are
    raised, and here the whole rest of the line is the value (it may hold spaces)."""
    return _SECRET_LINE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


def quote_line(text: str) -> str:
    """An offending input line for an error message: secrets masked, at most ~80 characters."""
    line = text.rstrip("\r\n")
    shown = mask_secrets(line[: QUOTE_LIMIT * 4])
    if len(shown) > QUOTE_LIMIT or len(line) > QUOTE_LIMIT * 4:
        return f"{shown[:QUOTE_LIMIT]!r}... ({len(line)} characters)"
    return repr(shown)


def check_single_line(key: str, located: Located) -> None:
    """Refuse a value spread over lines: in INI an indented line (``  password = x``) is
    silently glued to the key above it, so the next key would leak into e.g. hostname."""
    if "\n" in located.value or "\r" in located.value:
        raise InventoryError(
            f"'{key}' continues on an indented line below it; a value must fit on one line "
            "(is the next key indented by mistake?)",
            path=located.path,
            line=located.line,
        )
