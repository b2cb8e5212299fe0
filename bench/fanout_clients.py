"""Client side of ``bench/fanout.py``: run ONE approach in this process and report.

Started by the benchmark as its own process so that its CPU and memory can be measured
alone::

    python bench/fanout_clients.py APPROACH SPEC.json RESULT.json [--profile OUT.prof]

``--profile`` uses CPU time by default (``--profile-clock cpu``): on a loaded machine a
wall-clock profile mostly shows where the client was preempted (socket sends that wake sshd).

SPEC.json names the command, the known_hosts file and the hosts; RESULT.json receives the
run's wall time and CPU (measured here, after imports and set-up, so interpreter start-up
is not in them) and every host's outcome. A host counts as OK only if its command exited 0.

``hostbatch-cli`` is the exception: its run is a whole ``python -m hostbatch run`` process
started and waited for here, so its wall and CPU are that process's, start-up included.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import json
import multiprocessing
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import Outcome, Target, client_result, timed

if TYPE_CHECKING:
    from multiprocessing.queues import Queue

    import paramiko

Run = Callable[[], list[Outcome]]


@dataclass(frozen=True)
class Spec:
    command: str
    known_hosts: str
    timeout: float
    targets: tuple[Target, ...]
    workdir: str | None = None  # kept across the benchmark's runs (the CLI's inventory, journal)

    @classmethod
    def load(cls, path: Path) -> Spec:
        raw = json.loads(path.read_text())
        targets = tuple(Target(**item) for item in raw["targets"])
        return cls(
            raw["command"], raw["known_hosts"], float(raw["timeout"]), targets, raw.get("workdir")
        )


# -- hostbatch ---------------------------------------------------------------------------


def _hostbatch(spec: Spec, transport: str | None, workers: int | None) -> Run:
    """hostbatch.api.run with default options except the ones named."""
    from hostbatch.api import RunOptions, run
    from hostbatch.engine.limits import Limits
    from hostbatch.models import Credentials, Host
    from hostbatch.transport.base import ConnectOptions
    from hostbatch.transport.registry import DEFAULT, get_transport

    hosts = [
        Host(
            name=t.name,
            hostname=t.hostname,
            port=t.port,
            credentials=Credentials(username=t.username, key_file=t.key_file),
        )
        for t in spec.targets
    ]
    options = RunOptions(
        limits=Limits(workers=workers),
        connect=ConnectOptions(known_hosts=spec.known_hosts),
        transport=transport or DEFAULT,
    )
    get_transport(options.transport)  # import it now, as the seeds import paramiko up front

    def go() -> list[Outcome]:
        results = run(spec.command, hosts=hosts, options=options)
        outcomes: list[Outcome] = []
        for host in hosts:
            result = results.get(host.name)
            if result is None:
                outcomes.append((host.name, "no result"))
            elif result.ok and result.exit_status == 0:
                outcomes.append((host.name, None))
            else:
                reason = result.error or f"exit status {result.exit_status}"
                outcomes.append((host.name, f"{result.status.value}: {reason}"))
        return outcomes

    return go


def _cli_inventory(spec: Spec, path: Path) -> None:
    """An INI inventory of the spec's hosts, one section per host (as bench/persist.py)."""
    path.write_text(
        "".join(
            f"[{t.name}]\nhostname = {t.hostname}\nport = {t.port}\n"
            f"username = {t.username}\nkey_file = {t.key_file}\n\n"
            for t in spec.targets
        )
    )


def _cli_outcomes(spec: Spec, code: int, stdout: str, stderr: str) -> list[Outcome]:
    """Every host's outcome from the ``--json`` lines (one object per host)."""
    seen: dict[str, str | None] = {}
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if "host" not in record or "exit_status" not in record:
            continue
        status, error = record["exit_status"], record.get("error") or ""
        failed = f"{record.get('status')}: exit status {status} {error}".strip()
        seen[record["host"]] = None if status == 0 else failed
    why = f"no JSON line (CLI exit code {code}: {stderr.strip()[-200:]})"
    return [(t.name, seen.get(t.name, why)) for t in spec.targets]


def _hostbatch_cli(spec: Spec) -> Run:
    """``python -m hostbatch run -i INV -h all --json -- COMMAND``: the whole process, as a
    user runs it (start-up, imports, worker processes, the run journal)."""
    if spec.workdir is None:
        raise SystemExit("hostbatch-cli needs a workdir in the spec")
    workdir = Path(spec.workdir)
    inventory = workdir / f"inventory-{len(spec.targets)}.ini"
    _cli_inventory(spec, inventory)
    argv = [sys.executable, "-m", "hostbatch", "run", "-i", str(inventory), "--ssh-config", ""]
    argv += ["--known-hosts", spec.known_hosts, "-h", "all", "--json", "--", spec.command]
    env = {**os.environ, "HOSTBATCH_JOURNAL": str(workdir / "journal.sqlite")}
    for name in ("HOSTBATCH_PERSIST", "HOSTBATCH_INVENTORY", "HOSTBATCH_LOG"):
        env.pop(name, None)

    def go() -> list[Outcome]:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            code = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, check=False
            ).returncode
            out.seek(0)
            err.seek(0)
            return _cli_outcomes(spec, code, out.read().decode(), err.read().decode())

    return go


# -- the seeds' approaches: paramiko by hand ------------------------------------------------


class ParamikoSeed:
    """What a hand-written paramiko script does per host: connect, exec, read, close.

    Host keys are checked strictly (RejectPolicy, only the benchmark's known_hosts) and the
    key file is read once per process: the seeds pay for SSH, not for set-up mistakes.
    """

    def __init__(self, spec: Spec) -> None:
        importlib.import_module("paramiko")  # imported before the timed run, like hostbatch
        self.spec = spec
        self.known: dict[str, paramiko.PKey] = {}
        self.keys: dict[str, paramiko.PKey] = {}

    def load(self) -> None:
        """Parse known_hosts and the key files (timed: part of the seed's run)."""
        from paramiko.hostkeys import HostKeyEntry
        from paramiko.pkey import PKey

        for line in Path(self.spec.known_hosts).read_text().splitlines():
            entry = HostKeyEntry.from_line(line)
            if entry is not None and entry.key is not None:
                for name in entry.hostnames:
                    self.known[name] = entry.key
        for target in self.spec.targets:
            if target.key_file not in self.keys:
                self.keys[target.key_file] = PKey.from_path(target.key_file)

    def run_one(self, target: Target) -> Outcome:
        import paramiko

        client = paramiko.SSHClient()
        try:
            token = f"[{target.hostname}]:{target.port}"
            key = self.known.get(token)
            if key is not None:
                client.get_host_keys().add(token, key.get_name(), key)
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            client.connect(
                target.hostname,
                port=target.port,
                username=target.username,
                pkey=self.keys[target.key_file],
                timeout=self.spec.timeout,
                banner_timeout=self.spec.timeout,
                auth_timeout=self.spec.timeout,
                allow_agent=False,
                look_for_keys=False,
            )
            _, stdout, stderr = client.exec_command(self.spec.command)
            stdout.read()
            stderr.read()
            status = stdout.channel.recv_exit_status()
            return (target.name, None if status == 0 else f"exit status {status}")
        except Exception as exc:
            return (target.name, f"{type(exc).__name__}: {exc}")
        finally:
            client.close()


def _sequential(spec: Spec) -> Run:
    seed = ParamikoSeed(spec)

    def go() -> list[Outcome]:
        seed.load()
        return [seed.run_one(target) for target in spec.targets]

    return go


def _threads(spec: Spec) -> Run:
    seed = ParamikoSeed(spec)

    def go() -> list[Outcome]:
        seed.load()
        outcomes: list[Outcome | None] = [None] * len(spec.targets)

        def work(index: int) -> None:
            outcomes[index] = seed.run_one(spec.targets[index])

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(spec.targets))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [
            outcome or (target.name, "thread ended without a result")
            for outcome, target in zip(outcomes, spec.targets, strict=True)
        ]

    return go


def _process_main(seed: ParamikoSeed, target: Target, results: Queue[Outcome]) -> None:
    results.put(seed.run_one(target))


def _processes(spec: Spec) -> Run:
    seed = ParamikoSeed(spec)

    def go() -> list[Outcome]:
        seed.load()
        context = multiprocessing.get_context("fork")
        results: Queue[Outcome] = context.Queue()
        processes = [
            context.Process(target=_process_main, args=(seed, target, results))
            for target in spec.targets
        ]
        for process in processes:
            process.start()
        got: dict[str, str | None] = {}
        deadline = time.monotonic() + 3 * spec.timeout + 60
        while len(got) < len(processes) and time.monotonic() < deadline:
            try:
                name, reason = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            got[name] = reason
        for process in processes:
            process.join(timeout=5)
        return [
            (target.name, got[target.name])
            if target.name in got
            else (target.name, f"no result (process exit code {process.exitcode})")
            for target, process in zip(spec.targets, processes, strict=True)
        ]

    return go


# -- peers: what a user would write instead of hostbatch ---------------------------------


def _asyncssh_gather(spec: Spec) -> Run:
    """Plain asyncssh: ``connect`` + ``run`` per host, all under one ``asyncio.gather``, no
    concurrency cap. known_hosts and each key file are parsed once (timed), as the seeds do;
    host keys are checked strictly against the fleet's known_hosts."""
    import asyncssh

    async def one(target: Target, known: object, key: object) -> Outcome:
        try:
            async with asyncssh.connect(
                target.hostname,
                port=target.port,
                username=target.username,
                client_keys=[key],
                known_hosts=known,
                connect_timeout=spec.timeout,
            ) as conn:
                result = await conn.run(spec.command, check=False, timeout=spec.timeout)
        except Exception as exc:
            return (target.name, f"{type(exc).__name__}: {exc}")
        status = result.exit_status
        return (target.name, None if status == 0 else f"exit status {status}")

    async def every() -> list[Outcome]:
        known = asyncssh.read_known_hosts(spec.known_hosts)
        paths = {target.key_file for target in spec.targets}
        keys = {path: asyncssh.read_private_key(path) for path in paths}
        jobs = (one(target, known, keys[target.key_file]) for target in spec.targets)
        return list(await asyncio.gather(*jobs))

    return lambda: asyncio.run(every())


def _parallel_ssh(spec: Spec) -> Run:
    """parallel-ssh's ``ParallelSSHClient`` (libssh2 through ssh2-python, gevent), one pool
    slot per host: ``run_command`` + ``join``, exit codes checked. The library has no
    host-key verification at all (no known_hosts option): it cannot check them."""
    from pssh.clients import ParallelSSHClient
    from pssh.config import HostConfig

    def go() -> list[Outcome]:
        config = [
            HostConfig(port=t.port, user=t.username, private_key=t.key_file) for t in spec.targets
        ]
        client = ParallelSSHClient(
            [t.hostname for t in spec.targets],
            host_config=config,
            pool_size=len(spec.targets),
            timeout=spec.timeout,
        )
        output = client.run_command(spec.command, stop_on_errors=False)
        client.join(output)
        by_host: dict[str, str | None] = {}
        for host_out in output:
            if host_out.exception is not None:
                exc = host_out.exception
                by_host[host_out.host] = f"{type(exc).__name__}: {exc}"
            else:
                code = host_out.exit_code
                by_host[host_out.host] = None if code == 0 else f"exit code {code}"
            if host_out.client is not None:
                host_out.client.disconnect()  # the others close their connections too
        return [(t.name, by_host.get(t.hostname, "no output")) for t in spec.targets]

    return go


APPROACHES: dict[str, Callable[[Spec], Run]] = {
    "hostbatch": lambda spec: _hostbatch(spec, None, None),
    "hostbatch-paramiko": lambda spec: _hostbatch(spec, "paramiko", None),
    "hostbatch-1proc": lambda spec: _hostbatch(spec, None, 1),
    "hostbatch-cli": _hostbatch_cli,
    "seed-sequential": _sequential,
    "seed-threads": _threads,
    "seed-processes": _processes,
    "asyncssh-gather": _asyncssh_gather,
    "parallel-ssh": _parallel_ssh,
}


def _timed(run: Run, profile: Path | None, clock: str) -> tuple[list[Outcome], float, float]:
    """(outcomes, wall, CPU) of *run*, under cProfile when *profile* names a stats file."""
    if profile is None:
        return timed(run)
    profiler = cProfile.Profile(time.process_time) if clock == "cpu" else cProfile.Profile()

    def profiled() -> list[Outcome]:
        profiler.enable()
        try:
            return run()
        finally:
            profiler.disable()

    result = timed(profiled)
    profiler.dump_stats(str(profile))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("approach", choices=sorted(APPROACHES))
    parser.add_argument("spec", type=Path)
    parser.add_argument("result", type=Path)
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the run here")
    parser.add_argument("--profile-clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args(argv)
    spec = Spec.load(args.spec)
    run = APPROACHES[args.approach](spec)
    outcomes, wall, cpu = _timed(run, args.profile, args.profile_clock)
    result: dict[str, Any] = {
        "approach": args.approach,
        "hosts": len(spec.targets),
        **client_result(outcomes, len(spec.targets), wall, cpu),
    }
    args.result.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
