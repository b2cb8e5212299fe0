"""known_hosts handling shared by the transports: who is known, and recording new keys.

The libraries verify keys; this module only answers "does known_hosts name this host at
all?" (to tell an unknown key from a changed one) and appends accepted keys safely from
many processes at once. Malformed lines are skipped, as OpenSSH does: each is reported
once (file:line) through the ``hostbatch`` logger and never fails a host.
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

from hostbatch.logs import logger

MARKERS = ("@cert-authority", "@revoked")
# Host key (signature) algorithms by what one login's signature costs an OpenSSH server,
# cheapest first (bench/algorithms.py): an RSA-3072 signature costs sshd 9.2 ~1.5-2.5 ms
# more per login (ssh-keygen -Y sign: ~4 ms more); ed25519 and ECDSA P-256 are within
# the noise of each other, so OpenSSH's own order stands. A host with keys of several types
# known is asked for the cheapest of them first; each is a trusted key, so nothing is
# weakened. "ssh-rsa" also names RSA key lines.
SERVER_CHEAPEST_FIRST = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-rsa",
)


def server_cost_rank(algorithm: str) -> int:
    """Sort key for host key algorithms or key types: cheapest for the server first,
    those :data:`SERVER_CHEAPEST_FIRST` does not name last (a stable sort keeps their
    order)."""
    try:
        return SERVER_CHEAPEST_FIRST.index(algorithm)
    except ValueError:
        return len(SERVER_CHEAPEST_FIRST)


def host_token(host: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: ``host`` on port 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


def malformed(line: str) -> str | None:
    """Why a known_hosts *line* (not blank, not a comment) cannot be an entry; None if its
    shape is fine. OpenSSH skips such lines; asyncssh would refuse the whole file. (A key
    that does not decode is the transports' to skip: asyncssh ignores it silently.)"""
    fields = line.split()
    if fields[0].startswith("@"):
        if fields[0] not in MARKERS:
            return f"unknown marker {fields[0]}"
        fields = fields[1:]
    if len(fields) < 3:
        return "expected host names, key type and key"
    if fields[0].startswith("|") and _hash_parts(fields[0]) is None:
        return "invalid hashed host name"
    return None


def _hash_parts(pattern: str) -> tuple[bytes, bytes] | None:
    """(salt, digest) of a ``|1|salt|digest`` hashed name; None if it is not one."""
    parts = pattern.split("|")
    if len(parts) != 4 or parts[0] or parts[1] != "1":
        return None
    try:
        return base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
    except ValueError:
        return None


_warned: set[tuple[str, int]] = set()


def warn_malformed(path: Path, number: int, reason: str) -> None:
    """Log once per file:line that a known_hosts line is skipped."""
    with _index_lock:
        if (str(path), number) in _warned:
            return
        _warned.add((str(path), number))
    where = {"known_hosts": str(path), "known_hosts_line": number}  # for programs and tests
    logger.warning(
        "%s:%d: skipping malformed known_hosts line (%s)", path, number, reason, extra=where
    )


def _hashed_match(pattern: str, token: str) -> bool:
    parts = _hash_parts(pattern)
    if parts is None:
        return False
    salt, digest = parts
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
    malformed: dict[int, str] = field(default_factory=dict)  # line number: why skipped
    numbers: dict[str, int] = field(default_factory=dict)  # kept line: its first number


_indexes: dict[tuple[str, int, int], _Index] = {}
_index_lock = threading.Lock()


def _build_index(text: str) -> _Index:
    index = _Index()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        reason = malformed(line)
        if reason is not None:
            index.malformed[number] = reason
            continue
        index.numbers.setdefault(line, number)
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
    for number, reason in index.malformed.items():
        warn_malformed(path, number, reason)
    return index


def usable_text(path: Path) -> str:
    """known_hosts with its malformed lines blanked (so line numbers stay); "" when it
    cannot be read. For libraries that refuse a whole file for one bad line."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    skipped = _index(path).malformed
    if not skipped:
        return text
    lines = text.splitlines()
    return "\n".join("" if n in skipped else line for n, line in enumerate(lines, 1)) + "\n"


def key_lines(path: Path, host: str, port: int) -> list[str]:
    """The known_hosts lines holding a key for host:port (no @-marker lines). The file is
    indexed once per process and version, so each host costs a lookup, not a parse of
    every key in the file."""
    index, token = _index(path), host_token(host, port)
    return index.plain.get(token, []) + [line for line in index.other if _line_names(line, token)]


def line_number(path: Path, line: str) -> int:
    """The number of a line :func:`key_lines` returned (0 if the file changed since)."""
    return _index(path).numbers.get(line, 0)


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
