"""File transfer on top of any transport: destinations, recursion, verification, safety.

Semantics (like scp):

* put: a REMOTE ending in ``/``, or an existing remote directory, receives each source
  under its base name; otherwise REMOTE is the target file name (one source only). A
  missing remote directory fails that host with the remote's message; it is not created.
* get: every host's files land under ``LOCALDIR/<host>/<base name>``; remote names and
  host names can never place a file outside LOCALDIR.
* Every file is written under a temporary name and renamed when complete (transport).
  A process killed outright leaves its temporary; a later put into that directory
  removes temporaries of ours untouched for an hour (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import posixpath
import re
import shlex
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hostbatch.errors import RemoteFileError, UsageError
from hostbatch.logs import logger
from hostbatch.models import Transfer
from hostbatch.transport.base import RemoteStat, Transport

PROGRESS_INTERVAL = 0.1
CLEANUP_SECONDS = 5.0
VERIFY_SECONDS = 60.0  # sha256sum's limit when the transfer has no deadline


@dataclass(frozen=True)
class LocalItem:
    """One local file or directory of a put, relative to its source's base name."""

    path: Path
    relative: tuple[str, ...]  # () for the source itself
    is_dir: bool
    size: int


@dataclass
class TransferStats:
    files: int = 0
    bytes: int = 0


def preflight_put(transfer: Transfer) -> list[list[LocalItem]]:
    """Check every local source before any connection; per source, its files and dirs."""
    if not transfer.sources:
        raise UsageError("nothing to send: give at least one local file")
    return [_walk_local(Path(source), transfer.recursive) for source in transfer.sources]


def _walk_local(source: Path, recursive: bool) -> list[LocalItem]:
    try:
        info = source.stat()
    except OSError as exc:
        raise UsageError(f"{source}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        if not os.access(source, os.R_OK):
            raise UsageError(f"{source}: permission denied (not readable)")
        return [LocalItem(source, (), False, info.st_size)]
    if not recursive:
        raise UsageError(f"{source}: is a directory (use -r)")
    items = [LocalItem(source, (), True, 0)]

    def fail(exc: OSError) -> None:
        raise UsageError(f"{exc.filename}: {exc.strerror or exc} (unreadable directory)")

    for root, dirs, files in os.walk(source, onerror=fail):
        dirs.sort()
        base = Path(root).relative_to(source).parts
        for name in dirs:
            items.append(LocalItem(Path(root) / name, (*base, name), True, 0))
        for name in sorted(files):
            path = Path(root) / name
            try:
                size = path.stat().st_size
            except OSError as exc:
                raise UsageError(f"{path}: {exc.strerror or exc}") from None
            if not os.access(path, os.R_OK):
                raise UsageError(f"{path}: permission denied (not readable)")
            items.append(LocalItem(path, (*base, name), False, size))
    return items


class ProgressMeter:
    """Adds up one host's bytes across files; calls *report* at most every 0.1 s."""

    def __init__(self, total: int, report: Callable[[int, int], None]) -> None:
        self.total = total
        self.report = report
        self.finished_bytes = 0
        self.last = 0.0

    def file_progress(self, done: int, _total: int) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_INTERVAL:
            self.last = now
            self.report(self.finished_bytes + done, self.total)

    def file_done(self, size: int) -> None:
        self.finished_bytes += size
        self.report(self.finished_bytes, self.total)


async def put_to_host(
    transport: Transport,
    transfer: Transfer,
    sources: list[list[LocalItem]],
    meter: ProgressMeter,
    *,
    deadline: float | None = None,
) -> TransferStats:
    """Send every source to one host; *deadline* (``time.monotonic()``) bounds --verify."""
    stats = TransferStats()
    destination = transfer.destination
    target = await transport.stat(destination.rstrip("/") or "/")
    into_dir = target is not None and target.is_dir
    if (destination.endswith("/") or len(sources) > 1) and not into_dir:
        reason = "is not a directory" if target is not None else "no such directory"
        raise RemoteFileError(f"{destination}: {reason}")
    written: dict[str, None] = {}  # directories that received a file, in order
    for items in sources:
        root = items[0]
        base = posixpath.join(destination, root.path.name) if into_dir else destination
        for item in items:
            remote = posixpath.join(base, *item.relative) if item.relative else base
            if item.is_dir:
                await transport.mkdir(remote)
                continue
            await put_file(transport, item, remote, meter, preserve=transfer.preserve)
            written[posixpath.dirname(remote) or "."] = None
            if transfer.verify:
                await verify(transport, remote, item.path, _time_left(deadline))
            meter.file_done(item.size)
            stats.files += 1
            stats.bytes += item.size
    for directory in written:
        await remove_stale_temporaries(transport, directory)
    return stats


async def remove_stale_temporaries(transport: Transport, directory: str) -> int:
    """Delete our temporaries (``NAME.hostbatch-XXXXXXXX.tmp``) that a killed put left in
    *directory*: those not modified for STALE_SECONDS by the host's own clock (the
    directory's mtime, fresh from the file this put just renamed into it, is "now"; a
    put still running elsewhere keeps its temporary's mtime fresh). Best effort: a file
    that cannot be removed stays, and the host's result does not change."""
    removed = 0
    with contextlib.suppress(RemoteFileError):
        here = await transport.stat(directory)
        if here is None or not here.is_dir:
            return 0
        for name, info in await transport.listdir(directory):
            if (
                _TEMPORARY.search(name)
                and not info.is_dir
                and info.mtime < here.mtime - STALE_SECONDS
            ):
                with contextlib.suppress(RemoteFileError):
                    await transport.remove(posixpath.join(directory, name))
                    removed += 1
    if removed:
        logger.info(
            "removed %d stale temporary file(s) of killed transfers in %s", removed, directory
        )
    return removed


STALE_SECONDS = 3600.0  # a temporary untouched this long is a killed transfer's
_TEMPORARY = re.compile(r"\.hostbatch-[0-9a-f]{8}\.tmp\Z")


def _temporary_suffix() -> str:
    return f".hostbatch-{uuid.uuid4().hex[:8]}.tmp"


async def put_file(
    transport: Transport, item: LocalItem, remote: str, meter: ProgressMeter, *, preserve: bool
) -> None:
    """Upload under a temporary name, check the stored size, then rename into place, so
    an interrupted or short transfer never leaves a file under the final name."""
    temporary = remote + _temporary_suffix()
    try:
        await transport.put(item.path, temporary, meter.file_progress, preserve=preserve)
        stored = await transport.stat(temporary)
        if stored is None or stored.size != item.size:
            have = "nothing" if stored is None else f"{stored.size} of {item.size} bytes"
            raise RemoteFileError(f"put {remote}: the host stored {have} (disk full?)")
        await transport.rename(temporary, remote)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.shield(asyncio.wait_for(transport.remove(temporary), CLEANUP_SECONDS))
        raise


async def get_file(
    transport: Transport,
    remote: str,
    info: RemoteStat,
    local: Path,
    meter: ProgressMeter,
    *,
    preserve: bool,
) -> None:
    """Download under a temporary local name, check its size, then rename into place."""
    temporary = local.with_name(f".{local.name}{_temporary_suffix()}")
    try:
        await transport.get(remote, temporary, meter.file_progress, preserve=preserve)
        size = temporary.stat().st_size
        if size != info.size:
            raise RemoteFileError(f"get {remote}: received {size} of {info.size} bytes")
        temporary.replace(local)
    finally:
        temporary.unlink(missing_ok=True)


def safe_name(name: str) -> str:
    """A single path component that cannot climb out of its directory."""
    if not name or name in (".", "..") or "/" in name or "\0" in name or "\\" in name:
        raise RemoteFileError(f"refusing unsafe remote name {name!r}")
    return name


_ESCAPED = {"%": "%25", "/": "%2F", "\\": "%5C", "\0": "%00"}
NAME_MAX = 255  # bytes in one path component on Linux and macOS


def host_directory(local_dir: Path, host_name: str) -> Path:
    """``LOCALDIR/<host>``, the host name made one safe component, injectively: ``%``,
    ``/``, ``\\`` and NUL are percent-encoded and so is a leading dot, so ``a/b`` and
    ``a_b`` never share a directory (nor ``..`` and ``%2E.``). An empty name is ``%``."""
    cleaned = "".join(_ESCAPED.get(char, char) for char in host_name)
    if cleaned.startswith("."):
        cleaned = "%2E" + cleaned[1:]
    cleaned = cleaned or "%"
    if len(cleaned.encode()) > NAME_MAX:  # too long for one component: keep it unique
        digest = hashlib.sha256(host_name.encode()).hexdigest()[:16]
        cleaned = cleaned.encode()[: NAME_MAX - 18].decode(errors="ignore") + f"%~{digest}"
    path = local_dir / cleaned
    if path.resolve().parent != local_dir.resolve():
        raise RemoteFileError(f"host name {host_name!r} would write outside {local_dir}")
    return path


async def _remote_tree(
    transport: Transport, remote: str, relative: tuple[str, ...]
) -> list[tuple[str, tuple[str, ...], RemoteStat]]:
    """(remote path, local relative parts, stat) for everything under a remote directory."""
    found: list[tuple[str, tuple[str, ...], RemoteStat]] = []
    for name, info in sorted(await transport.listdir(remote)):
        path, parts = posixpath.join(remote, name), (*relative, safe_name(name))
        found.append((path, parts, info))
        if info.is_dir:
            found.extend(await _remote_tree(transport, path, parts))
    return found


async def _plan_get(
    transport: Transport, transfer: Transfer
) -> list[tuple[str, tuple[str, ...], RemoteStat]]:
    plan: list[tuple[str, tuple[str, ...], RemoteStat]] = []
    for source in transfer.sources:
        info = await transport.stat(source)
        if info is None:
            raise RemoteFileError(f"{source}: no such file or directory")
        root = (safe_name(posixpath.basename(source.rstrip("/")) or "root"),)
        plan.append((source, root, info))
        if info.is_dir:
            if not transfer.recursive:
                raise RemoteFileError(f"{source}: is a directory (use -r)")
            plan.extend(await _remote_tree(transport, source, root))
    return plan


async def get_from_host(
    transport: Transport,
    transfer: Transfer,
    host_name: str,
    report: Callable[[int, int], None],
    *,
    deadline: float | None = None,
) -> TransferStats:
    """Fetch every source from one host into ``LOCALDIR/<host>/``; *deadline* as for put."""
    host_dir = host_directory(Path(transfer.destination), host_name)
    entries = await _plan_get(transport, transfer)
    meter = ProgressMeter(sum(i.size for _, _, i in entries if not i.is_dir), report)
    stats = TransferStats()
    host_dir.mkdir(parents=True, exist_ok=True)
    for remote, parts, info in entries:
        local = host_dir.joinpath(*parts)
        if info.is_dir:
            local.mkdir(exist_ok=True)
            continue
        await get_file(transport, remote, info, local, meter, preserve=transfer.preserve)
        if transfer.verify:
            await verify(transport, remote, local, _time_left(deadline))
        meter.file_done(info.size)
        stats.files += 1
        stats.bytes += info.size
    return stats


def local_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _time_left(deadline: float | None) -> float:
    if deadline is None:
        return VERIFY_SECONDS
    return max(0.001, deadline - time.monotonic())


async def verify(transport: Transport, remote: str, local: Path, timeout: float) -> None:
    """Compare SHA-256 of both sides (the remote side with ``sha256sum``, stopped after
    *timeout* seconds: the time the transfer has left)."""
    output = bytearray()
    status = await transport.run(
        f"sha256sum -- {shlex.quote(remote)}", lambda _s, data: output.extend(data), timeout
    )
    remote_digest = bytes(output).split(b" ", 1)[0].decode(errors="replace")
    if status != 0 or len(remote_digest) != 64:
        raise RemoteFileError(f"--verify: cannot compute sha256 of {remote} on the host")
    if remote_digest != local_sha256(local):
        raise RemoteFileError(f"--verify: sha256 of {remote} differs from {local}")
