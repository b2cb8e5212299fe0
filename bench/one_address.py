"""Fleets behind one address: `true` on many inventory hosts that all reach one sshd, with
hostbatch's default options, against the same run on a server whose MaxStartups is raised.

Scenarios (each against real OpenSSH sshd daemons on loopback)::

    nat      N hosts (default 300) that are all 127.0.0.1:PORT of one sshd (NAT, a lab
             behind one port, containers on one host)
    bastion  N hosts (default 200) behind one jump host (a second sshd) to that sshd

Servers: ``throttled`` runs OpenSSH's default ``MaxStartups 10:30:100`` on every daemon,
``raised`` runs ``common.MAX_STARTUPS`` (never drops a start). Rounds interleave the two,
so drift of this shared machine hits both alike. Usage::

    .venv/bin/python bench/one_address.py --repeat 3
    .venv/bin/python bench/one_address.py --scenarios nat --hosts 300 --repeat 1

Each run is a client process of its own (this file with ``--client``), measured by
``common.measure_client``; it reports how many hosts were ok, the Throttled reports, and
the driver counts the bastion's logins (``Accepted publickey`` lines in its log). The
table goes to stdout and to bench/results/one-address-<date>.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import MAX_STARTUPS, Sample, client_result, environment, measure_client, save_report

THROTTLED = "10:30:100"  # OpenSSH's default
SERVERS = {"throttled": THROTTLED, "raised": MAX_STARTUPS}
DEFAULT_HOSTS = {"nat": 300, "bastion": 200}


# -- client side -------------------------------------------------------------------------


def _client(spec_path: Path, result_path: Path) -> None:
    from common import timed
    from hostbatch.api import RunOptions, run
    from hostbatch.models import Credentials, Event, Host, Throttled
    from hostbatch.transport.base import ConnectOptions

    spec = json.loads(spec_path.read_text())
    target, jump_spec = spec["target"], spec.get("jump")
    jump = None
    if jump_spec is not None:
        creds = Credentials(jump_spec["username"], key_file=jump_spec["key_file"])
        jump = Host("bastion1", jump_spec["hostname"], jump_spec["port"], creds)
    creds = Credentials(target["username"], key_file=target["key_file"])
    hosts = [
        Host(f"h{i:04d}", target["hostname"], target["port"], creds, jump=jump)
        for i in range(spec["hosts"])
    ]
    reports: list[str] = []

    def keep(event: Event) -> None:
        if isinstance(event, Throttled):
            reports.append(f"settled at {event.settled}, {event.dropped} dropped")

    options = RunOptions(connect=ConnectOptions(known_hosts=spec["known_hosts"]))
    results, wall, cpu = timed(lambda: run("true", hosts=hosts, options=options, on_event=keep))
    outcomes = [(name, None if r.ok else r.error or r.status.value) for name, r in results.items()]
    report = client_result(outcomes, len(hosts), wall, cpu) | {"throttled": reports}
    result_path.write_text(json.dumps(report))


# -- driver ------------------------------------------------------------------------------


def _login(server: Any) -> dict[str, Any]:
    return {
        "hostname": server.host,
        "port": server.port,
        "username": server.username,
        "key_file": str(server.client_key),
    }


@contextlib.contextmanager
def _servers(scenario: str, max_startups: str, workdir: Path) -> Iterator[dict[str, Any]]:
    """The daemons of one scenario; yields the client spec's server part and the bastion."""
    from hostbatch.testing.sshd import OpenSSHServer

    with contextlib.ExitStack() as stack:
        target = stack.enter_context(OpenSSHServer(max_startups=max_startups))
        known = workdir / "known_hosts"
        text, parts = target.known_hosts.read_text(), {"target": _login(target)}
        bastion = None
        if scenario == "bastion":
            bastion = stack.enter_context(OpenSSHServer(max_startups=max_startups))
            text += bastion.known_hosts.read_text()
            parts["jump"] = _login(bastion)
        known.write_text(text)
        yield {"spec": {**parts, "known_hosts": str(known)}, "servers": [target, bastion]}


def _one_run(scenario: str, server: str, hosts: int, workdir: Path) -> dict[str, Any]:
    with _servers(scenario, SERVERS[server], workdir) as started:
        target, bastion = started["servers"]
        live = [s for s in (target, bastion) if s is not None]
        spec = {**started["spec"], "hosts": hosts}
        argv = [sys.executable, __file__, "--client"]
        sample, result = measure_client(
            argv, spec, lambda: sum(s.cpu_seconds() for s in live), hosts, timeout=600
        )
        logins = bastion.log_text().count("Accepted publickey") if bastion else None
    return {"sample": sample, "throttled": result.get("throttled", []), "logins": logins}


def _row(scenario: str, server: str, hosts: int, runs: list[dict[str, Any]], base: float) -> str:
    samples: list[Sample] = [run["sample"] for run in runs]
    wall = statistics.median(s.wall for s in samples)
    ok = min(s.ok for s in samples)
    walls = ", ".join(f"{s.wall:.2f}" for s in samples)
    logins = "/".join(str(r["logins"]) for r in runs) if runs[0]["logins"] is not None else "-"
    throttled = "; ".join(sorted({t for r in runs for t in r["throttled"]})) or "-"
    ratio = f"{wall / base:.2f}" if base else "-"
    return (
        f"| {scenario} | {hosts} | {server} ({SERVERS[server]}) | {wall:.2f} ({walls}) | "
        f"{ratio} | {ok}/{hosts} | {logins} | {throttled} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="hosts behind one address (real sshd)")
    parser.add_argument("--scenarios", default="nat,bastion")
    parser.add_argument("--hosts", type=int, default=None, help="hosts per scenario")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--client", nargs=2, metavar=("SPEC", "RESULT"))
    args = parser.parse_args(argv)
    if args.client:
        _client(Path(args.client[0]), Path(args.client[1]))
        return 0
    import tempfile

    rows, failed = [], False
    for scenario in args.scenarios.split(","):
        hosts = args.hosts or DEFAULT_HOSTS[scenario]
        runs: dict[str, list[dict[str, Any]]] = {server: [] for server in SERVERS}
        for round_number in range(args.repeat):
            for server in SERVERS:
                with tempfile.TemporaryDirectory(prefix="hostbatch-bench-") as tmp:
                    run = _one_run(scenario, server, hosts, Path(tmp))
                runs[server].append(run)
                sample = run["sample"]
                print(f"{scenario} {server} round {round_number + 1}: {sample.wall:.2f}s "
                      f"ok {sample.ok}/{hosts} {run['throttled']}", file=sys.stderr)  # fmt: skip
                failed |= sample.ok != hosts
        base = statistics.median(r["sample"].wall for r in runs["raised"])
        rows += [_row(scenario, server, hosts, runs[server], base) for server in SERVERS]
    header = (
        "| scenario | hosts | server MaxStartups | wall s median (runs) | wall / raised | ok "
        "| bastion logins | throttled reports |\n|---|---|---|---|---|---|---|---|\n"
    )
    save_report("one-address", f"{environment()}\n\n{header}" + "\n".join(rows) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
