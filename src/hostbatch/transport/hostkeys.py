"""known_hosts handling shared by the transports: who is known, and recording new keys.

The libraries verify keys; this module only answers "does known_hosts name this host at
all?" (to tell an unknown key from a changed one) and appends accepted keys safely from
many processes at once.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path


def host_token(host: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: ``host`` on port 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


def _hashed_match(pattern: str, token: str) -> bool:
    try:
        _, _, salt_b64, digest_b64 = pattern.split("|")
        salt, digest = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    except ValueError:
        return False
    mac = hmac.new(salt, token.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(mac, digest)


def _wildcard_match(token: str, pattern: str) -> bool:
    """OpenSSH patterns: only ``*`` and ``?`` are special; ``[host]:port`` is literal."""
    if "*" not in pattern and "?" not in pattern:
        return token == pattern
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, token) is not None


def _line_names(line: str, token: str) -> bool:
    fields = line.split()
    if len(fields) < 3:
        return False
    names = fields[1] if fields[0].startswith("@") else fields[0]
    if fields[0] == "@revoked":
        return False
    if names.startswith("|1|"):
        return _hashed_match(names, token)
    matched = False
    for pattern in names.split(","):
        negated = pattern.startswith("!")
        if _wildcard_match(token, pattern.lstrip("!")):
            if negated:
                return False
            matched = True
    return matched


@dataclass
class _Index:
    """A known_hosts file's plain key lines by exact host token; hashed, wildcard and
    negated names are matched line by line (a few, usually), as are marker lines."""

    plain: dict[str, list[str]] = field(default_factory=dict)
    other: list[str] = field(default_factory=list)
    markers: list[str] = field(default_factory=list)  # @cert-authority, @revoked


_indexes: dict[tuple[str, int, int], _Index] = {}
_index_lock = threading.Lock()


def _build_index(text: str) -> _Index:
    index = _Index()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):  # markers are not plain keys
            index.markers.append(line)
            continue
        names = line.split(None, 1)[0]
        if names.startswith("|1|") or any(c in names for c in "*?!"):
            index.other.append(line)
            continue
        for name in dict.fromkeys(names.split(",")):
            index.plain.setdefault(name, []).append(line)
    return index


def _index(path: Path) -> _Index:
    """*path* indexed once per process and file version (empty when it cannot be read)."""
    try:
        info = path.stat()
    except OSError:
        return _Index()
    cache_key = (str(path), info.st_mtime_ns, info.st_size)
    with _index_lock:
        index = _indexes.get(cache_key)
        if index is None:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                return _Index()
            _indexes.clear()
            index = _indexes[cache_key] = _build_index(text)
    return index


def key_lines(path: Path, host: str, port: int) -> list[str]:
    """The known_hosts lines holding a key for host:port (no @-marker lines). The file is
    indexed once per process and version, so each host costs a lookup, not a parse of
    every key in the file."""
    index, token = _index(path), host_token(host, port)
    return index.plain.get(token, []) + [line for line in index.other if _line_names(line, token)]


def is_known(path: Path, host: str, port: int) -> bool:
    """True when known_hosts has any key for host:port, a CA marker included (so a
    mismatch means it changed)."""
    token = host_token(host, port)
    return any(len(line.split()) >= 3 for line in key_lines(path, host, port)) or any(
        _line_names(line, token) for line in _index(path).markers
    )


def record(path: Path, host: str, port: int, key_line: str) -> None:
    """Append ``host key-type base64`` to known_hosts, under a lock (many workers at once)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    entry = f"{host_token(host, port)} {key_line.strip()}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, entry.encode())
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def unknown_message(host: str, port: int, path: Path) -> str:
    return (
        f"host key for {host_token(host, port)} is not in {path}; "
        "add it, or run with --host-keys accept-new to record it"
    )


def changed_message(host: str, port: int, path: Path) -> str:
    return (
        f"HOST KEY CHANGED for {host_token(host, port)}: it differs from {path}. "
        "This may be an attack; if the change is expected, remove the old entry"
    )
