"""The transfer benchmark's fleet: sshd daemons whose every host is its own SFTP chroot.

All hosts are this machine, so each one needs a target directory of its own. Every host
has its own loopback address (``common.address``), and its daemon's config ends with
one block per address::

    Match LocalAddress 127.0.1.1
        ChrootDirectory /var/lib/hostbatch-bench-chroot-XXXX/h0000
        ForceCommand internal-sftp

so a client that writes ``/in/FILE`` on host *i* writes ``.../h000i/in/FILE`` here, for
hostbatch (asyncssh or paramiko SFTP) and OpenSSH ``scp`` alike (9.x ``scp`` speaks SFTP).
sshd requires every component of a chroot path to be root-owned and not writable by group
or others, so the chroots live under ``/var/lib`` (``/tmp`` is world-writable) and this
needs root; ``in/`` inside each is owned by the login user.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from common import SshdFleet, address, sshd_fleet

CHROOT_PARENT = Path("/var/lib")  # root-owned, 0755 all the way up (unlike /tmp)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _chroot(base: Path, index: int) -> Path:
    return base / f"h{index:04d}"


def _match_blocks(base: Path, first: int, last: int) -> list[str]:
    lines: list[str] = []
    for index in range(first, last):
        lines += [
            f"Match LocalAddress {address(index)}",
            f"    ChrootDirectory {_chroot(base, index)}",
            "    ForceCommand internal-sftp",
        ]
    return lines


@contextlib.contextmanager
def chroot_fleet(hosts: int) -> Iterator[ChrootFleet]:
    """A started :class:`ChrootFleet` of *hosts* hosts; everything removed afterwards."""
    if os.geteuid() != 0:
        raise SystemExit(
            "bench/transfer.py needs root: sshd's ChrootDirectory must be root-owned, "
            "and it is how every loopback host gets a target directory of its own"
        )
    base = Path(tempfile.mkdtemp(prefix="hostbatch-bench-chroot-", dir=CHROOT_PARENT))
    try:
        base.chmod(0o755)  # mkdtemp makes it 0700: the login user must get through
        for index in range(hosts):
            (_chroot(base, index) / "in").mkdir(mode=0o755, parents=True)
            _chroot(base, index).chmod(0o755)
        blocks = functools.partial(_match_blocks, base)
        with sshd_fleet(hosts, extra_config=blocks, workdir=base) as sshd:
            fleet = ChrootFleet(base, sshd)
            user = pwd.getpwnam(sshd.servers[0].username)
            for index in range(hosts):
                os.chown(fleet.inbox(index), user.pw_uid, user.pw_gid)
            yield fleet
    finally:
        shutil.rmtree(base, ignore_errors=True)


class ChrootFleet:
    """The hosts of an :class:`common.SshdFleet`, one SFTP chroot each under *base*."""

    def __init__(self, base: Path, sshd: SshdFleet) -> None:
        self.base = base
        self.sshd = sshd
        self.size = sshd.size

    def inbox(self, index: int) -> Path:
        """Where host *index*'s ``/in/`` is on this machine."""
        return _chroot(self.base, index) / "in"

    def check(self, hosts: int, name: str, size: int, digest: str) -> list[tuple[str, str]]:
        """Every host's copy has *size* bytes, nothing else is left, host 0 has *digest*."""
        problems: list[tuple[str, str]] = []
        for index in range(hosts):
            inbox = self.inbox(index)
            copy = inbox / name
            if not copy.is_file():
                problems.append((f"host{index:04d}", f"no {name} in /in/"))
            elif copy.stat().st_size != size:
                problems.append((f"host{index:04d}", f"{copy.stat().st_size} bytes, not {size}"))
            extra = sorted(p.name for p in inbox.iterdir() if p.name != name)
            if extra:
                problems.append((f"host{index:04d}", f"left over in /in/: {extra[:3]}"))
        if not problems and sha256_of(self.inbox(0) / name) != digest:
            problems.append(("host0000", "sha256 differs from the source"))
        return problems

    def clean(self) -> None:
        """Empty every host's ``/in/``."""
        for index in range(self.size):
            for entry in self.inbox(index).iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
