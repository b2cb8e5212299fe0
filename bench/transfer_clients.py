"""Client side of ``bench/transfer.py``: ONE approach copies one file to every host.

Started by the benchmark as its own process so that its CPU and memory are measured alone::

    python bench/transfer_clients.py APPROACH SPEC.json RESULT.json

SPEC.json: ``file``, ``known_hosts``, ``timeout``, ``targets`` (common.Target
fields) and, for ``asyncssh-sftp``, ``block_size`` and ``max_requests``. Every approach
writes the file to ``/in/`` of each host. RESULT.json gets the run's wall and CPU (this
process and its waited-for children: the scp and ssh processes) and each host's outcome.

Approaches:

* ``hostbatch``: ``hostbatch.api.put(file, "/in/", hosts=[Host...])``, default options;
* ``hostbatch-paramiko``: the same with ``transport="paramiko"``;
* ``scp``: one OpenSSH ``scp`` per host, all started at once and waited for together;
* ``asyncssh-sftp``: not hostbatch's code path but the SFTP call its transport makes,
  ``SFTPClient.put(..., block_size=B, max_requests=R)`` on a connection opened by
  hostbatch's asyncssh transport (same ciphers and keys), to show what those two values do.
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import Outcome, Target, client_result, timed

Run = Callable[[], list[Outcome]]


def _hosts(targets: list[Target]) -> list[Any]:
    from hostbatch.models import Credentials, Host

    return [
        Host(
            name=t.name,
            hostname=t.hostname,
            port=t.port,
            credentials=Credentials(username=t.username, key_file=t.key_file),
        )
        for t in targets
    ]


def _hostbatch(spec: dict[str, Any], targets: list[Target], transport: str) -> Run:
    from hostbatch.api import RunOptions, put
    from hostbatch.transport.base import ConnectOptions
    from hostbatch.transport.registry import get_transport

    hosts = _hosts(targets)
    options = RunOptions(
        connect=ConnectOptions(known_hosts=spec["known_hosts"]), transport=transport
    )
    get_transport(transport)  # import the transport before the timed run

    def go() -> list[Outcome]:
        results = put(spec["file"], "/in/", hosts=hosts, options=options)
        outcomes: list[Outcome] = []
        for host in hosts:
            result = results.get(host.name)
            if result is None:
                outcomes.append((host.name, "no result"))
            else:
                outcomes.append((host.name, None if result.ok else f"{result.error}"))
        return outcomes

    return go


def _scp_argv(spec: dict[str, Any], target: Target) -> list[str]:
    return [
        shutil.which("scp") or "scp",
        "-q",
        "-F",
        os.devnull,
        "-o",
        "BatchMode=yes",
        "-o",
        f"UserKnownHostsFile={spec['known_hosts']}",
        "-o",
        f"GlobalKnownHostsFile={os.devnull}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-P",
        str(target.port),
        "-i",
        target.key_file,
        spec["file"],
        f"{target.username}@{target.hostname}:/in/",
    ]


def _scp(spec: dict[str, Any], targets: list[Target]) -> Run:
    def go() -> list[Outcome]:
        processes = [
            subprocess.Popen(
                _scp_argv(spec, t),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for t in targets
        ]
        outcomes: list[Outcome] = []
        for target, process in zip(targets, processes, strict=True):
            _, stderr = process.communicate(timeout=spec["timeout"])
            reason = None
            if process.returncode != 0:
                reason = f"scp exit {process.returncode}: {stderr.decode(errors='replace')[-200:]}"
            outcomes.append((target.name, reason))
        return outcomes

    return go


async def _sftp_one(host: Any, spec: dict[str, Any]) -> Outcome:
    from hostbatch.transport.asyncssh_ import AsyncsshTransport
    from hostbatch.transport.base import ConnectOptions

    transport = AsyncsshTransport(host, ConnectOptions(known_hosts=spec["known_hosts"]))
    try:
        await transport.connect()
        async with transport.conn.start_sftp_client() as sftp:
            remote = posixpath.join("/in", Path(spec["file"]).name)
            await sftp.put(
                spec["file"],
                remote,
                block_size=spec["block_size"],
                max_requests=spec["max_requests"],
            )
        return (host.name, None)
    except Exception as exc:
        return (host.name, f"{type(exc).__name__}: {exc}")
    finally:
        await transport.close()


def _asyncssh_sftp(spec: dict[str, Any], targets: list[Target]) -> Run:
    import hostbatch.transport.asyncssh_  # noqa: F401  imported before the timed run

    hosts = _hosts(targets)

    async def all_hosts() -> list[Outcome]:
        return list(await asyncio.gather(*(_sftp_one(h, spec) for h in hosts)))

    return lambda: asyncio.run(all_hosts())


APPROACHES: dict[str, Callable[[dict[str, Any], list[Target]], Run]] = {
    "hostbatch": lambda spec, targets: _hostbatch(spec, targets, "asyncssh"),
    "hostbatch-paramiko": lambda spec, targets: _hostbatch(spec, targets, "paramiko"),
    "scp": _scp,
    "asyncssh-sftp": _asyncssh_sftp,
}


def main(argv: list[str]) -> int:
    approach, spec_path, result_path = argv
    spec = json.loads(Path(spec_path).read_text())
    targets = [Target(**item) for item in spec["targets"]]
    run = APPROACHES[approach](spec, targets)
    outcomes, wall, cpu = timed(run)
    Path(result_path).write_text(json.dumps(client_result(outcomes, len(targets), wall, cpu)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
