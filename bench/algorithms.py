"""What each SSH algorithm choice costs the *server* per login (issue #16). Usage::

    .venv/bin/python bench/algorithms.py                     # 200 hosts, 5 rounds
    .venv/bin/python bench/algorithms.py --hosts 100 --rounds 3 --only base,kex-nistp256

On a ``common.sshd_fleet`` (real OpenSSH sshd, one loopback address per host, every sshd
process in a cpuacct cgroup) every variant logs in to each of the N hosts with asyncssh
and runs ``true``; the variants take turns round by round (A, B, C, A, B, C, ... with the
starting variant rotated each round), so the machine's drift hits them alike. Per login:
the server's CPU (cgroup delta after its sessions ended / logins), the client's CPU
(getrusage of this process and its waited-for ``ssh`` children) and the whole batch's wall.

Each variant differs from ``base`` (curve25519-sha256, aes128-gcm, ssh-ed25519 host key,
ed25519 client key) in one choice, forced by giving asyncssh a one-element list (so it is
what was negotiated, or the login fails; the cipher and host key are also checked on the
connection). The daemons get RSA and ECDSA host keys besides their ed25519 one (``HostKey``
lines through ``extra_config``) and authorized_keys for ed25519, ECDSA and RSA client keys.

Baselines put the differences in proportion: ``auth-only`` closes right after
authentication (no session, no shell), ``banner-only`` closes after reading the server's
banner (sshd's fork and re-exec, config and host keys loaded, nothing else); ``sshd -t``
(config parse and host key loading in a fresh sshd, what every re-exec does) is timed
apart. ``openssh-*`` log in with OpenSSH's own ``ssh`` client, for the kex asyncssh cannot
negotiate here (sntrup761 needs liboqs); their client CPU is the ``ssh`` processes'.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import asyncssh

from common import (
    ADDRESSES_PER_DAEMON,
    SshdFleet,
    cpu_seconds,
    environment,
    machine_busy,
    save_report,
    sshd_fleet,
)
from hostbatch.testing.sshd import find_sshd

COMMAND = "true"
SETTLE_TIMEOUT = 15.0  # sessions still ending after the client closed
HOST_KEY_TYPES = {"rsa": "ssh-rsa", "ecdsa": "ecdsa-sha2-nistp256"}  # besides ed25519
CLIENT_KEY_TYPES = ("ed25519", "ecdsa", "rsa")
KEYGEN_OPTIONS = {"ed25519": [], "ecdsa": ["-b", "256"], "rsa": []}  # rsa: 3072, the default


@dataclass(frozen=True)
class Variant:
    """One way to log in; every field but the one a variant is about is ``base``'s."""

    key: str
    group: str
    kex: str = "curve25519-sha256"
    cipher: str = "aes128-gcm@openssh.com"
    host_key: str = "ssh-ed25519"
    client_key: str = "ed25519"
    mode: str = "command"  # command | auth | banner | openssh


BASE = Variant("base", "base")
VARIANTS = (
    BASE,
    replace(BASE, key="kex-curve25519-libssh", group="kex", kex="curve25519-sha256@libssh.org"),
    replace(BASE, key="kex-mlkem768x25519", group="kex", kex="mlkem768x25519-sha256"),
    replace(BASE, key="kex-sntrup761", group="kex", kex="sntrup761x25519-sha512@openssh.com"),
    replace(BASE, key="kex-nistp256", group="kex (reference)", kex="ecdh-sha2-nistp256"),
    replace(
        BASE, key="kex-dh-group16", group="kex (reference)", kex="diffie-hellman-group16-sha512"
    ),
    replace(BASE, key="cipher-aes256-gcm", group="cipher", cipher="aes256-gcm@openssh.com"),
    replace(BASE, key="cipher-chacha20", group="cipher", cipher="chacha20-poly1305@openssh.com"),
    replace(BASE, key="hostkey-ecdsa", group="host key", host_key="ecdsa-sha2-nistp256"),
    replace(BASE, key="hostkey-rsa-sha2-256", group="host key", host_key="rsa-sha2-256"),
    replace(BASE, key="hostkey-rsa-sha2-512", group="host key", host_key="rsa-sha2-512"),
    replace(BASE, key="clientkey-ecdsa", group="client key", client_key="ecdsa"),
    replace(BASE, key="clientkey-rsa", group="client key", client_key="rsa"),
    replace(BASE, key="auth-only", group="baseline", mode="auth"),
    replace(BASE, key="banner-only", group="baseline", mode="banner"),
    replace(BASE, key="openssh-curve25519", group="OpenSSH client", mode="openssh"),
    replace(
        BASE,
        key="openssh-sntrup761",
        group="OpenSSH client",
        kex="sntrup761x25519-sha512@openssh.com",
        mode="openssh",
    ),
)


@dataclass
class Context:
    """What every login needs: targets, keys, known_hosts, limits."""

    fleet: SshdFleet
    hosts: int
    known_hosts: Path
    key_files: dict[str, Path]
    keys: dict[str, asyncssh.SSHKey]
    known: asyncssh.SSHKnownHosts
    concurrency: int
    openssh_concurrency: int


@dataclass
class Sample:
    """One variant's run over every host in one round."""

    server_ms: float  # per login
    client_ms: float  # per login
    wall: float  # the whole batch
    other_ms: float  # per login: the machine's other busy CPU in the same window
    failures: list[str] = field(default_factory=list)


# -- the fleet's extra keys ----------------------------------------------------------------


def _keygen(path: Path, kind: str) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, *KEYGEN_OPTIONS[kind], "-N", "", "-f", str(path)],
        check=True,
    )
    return path


def host_key_config(keydir: Path) -> Callable[[int, int], list[str]]:
    """``extra_config`` giving every daemon an RSA and an ECDSA host key (one pair shared)."""
    lines = [f"HostKey {_keygen(keydir / f'host_{kind}', kind)}" for kind in HOST_KEY_TYPES]
    return lambda first, last: lines


def _address_targets(fleet: SshdFleet, hosts: int) -> list[tuple[str, int, str]]:
    return [(t["hostname"], t["port"], t["username"]) for t in fleet.targets(hosts)]


def prepare_keys(fleet: SshdFleet, hosts: int, keydir: Path) -> tuple[Path, dict[str, Path]]:
    """known_hosts with every host key type of every host; client keys of every type,
    authorized on every daemon."""
    extra = [(keydir / f"host_{kind}.pub").read_text().split()[:2] for kind in HOST_KEY_TYPES]
    lines = [fleet.known_hosts.read_text()]
    for hostname, port, _ in _address_targets(fleet, hosts):
        lines += [f"[{hostname}]:{port} {kind} {blob}\n" for kind, blob in extra]
    known_hosts = keydir / "known_hosts"
    known_hosts.write_text("".join(lines))
    key_files = {kind: _keygen(keydir / f"id_{kind}", kind) for kind in CLIENT_KEY_TYPES}
    public = "".join(Path(f"{path}.pub").read_text() for path in key_files.values())
    for server in fleet.servers:
        with (server.root / "authorized_keys").open("a") as handle:
            handle.write(public)
    return known_hosts, key_files


# -- what can be negotiated here -----------------------------------------------------------


def _sshd() -> str:
    return str(find_sshd() or "sshd")


def server_algorithms(fleet: SshdFleet) -> dict[str, list[str]]:
    """``sshd -T`` of the first daemon: kexalgorithms, ciphers, hostkeyalgorithms..."""
    config = fleet.servers[0].root / "sshd_config"
    done = subprocess.run(
        [_sshd(), "-T", "-f", str(config)], capture_output=True, text=True, check=True
    )
    return {
        name: value.split(",")
        for name, _, value in (line.partition(" ") for line in done.stdout.splitlines())
    }


def openssh_client_kex() -> list[str]:
    done = subprocess.run(["ssh", "-Q", "kex"], capture_output=True, text=True, check=True)
    return done.stdout.split()


def why_not(variant: Variant, server: dict[str, list[str]]) -> str | None:
    """None when *variant* can be negotiated on this machine, else why not."""
    if variant.kex not in server.get("kexalgorithms", []):
        return f"this sshd does not offer {variant.kex} (ML-KEM needs OpenSSH 9.9+)"
    if variant.mode == "openssh":
        return None if variant.kex in openssh_client_kex() else "ssh lacks it"
    asyncssh_kex = [alg.decode() for alg in asyncssh.kex.get_kex_algs()]
    if variant.kex not in asyncssh_kex:
        return (
            f"asyncssh {asyncssh.__version__} lacks {variant.kex} (sntrup761 needs the "
            "liboqs shared library, which Debian 12 does not package): see openssh-sntrup761"
        )
    return None


# -- one login -----------------------------------------------------------------------------


async def _asyncssh_login(target: tuple[str, int, str], variant: Variant, ctx: Context) -> None:
    hostname, port, username = target
    conn = await asyncssh.connect(
        hostname,
        port=port,
        username=username,
        config=None,
        agent_path=None,
        client_keys=[ctx.keys[variant.client_key]],
        known_hosts=ctx.known,
        kex_algs=[variant.kex],
        encryption_algs=[variant.cipher],
        server_host_key_algs=[variant.host_key],
    )
    async with conn:
        cipher = conn.get_extra_info("send_cipher")
        if cipher != variant.cipher:
            raise RuntimeError(f"negotiated {cipher}, not {variant.cipher}")
        if variant.mode == "command":
            done = await conn.run(COMMAND, check=False)
            if done.exit_status != 0:
                raise RuntimeError(f"exit status {done.exit_status}")


async def _banner_only(target: tuple[str, int, str]) -> None:
    reader, writer = await asyncio.open_connection(target[0], target[1])
    try:
        banner = await reader.readline()
        if not banner.startswith(b"SSH-"):
            raise RuntimeError(f"no SSH banner: {banner[:40]!r}")
    finally:
        writer.close()
        await writer.wait_closed()


async def _openssh_login(target: tuple[str, int, str], variant: Variant, ctx: Context) -> None:
    hostname, port, username = target
    options = {
        "UserKnownHostsFile": str(ctx.known_hosts),
        "GlobalKnownHostsFile": os.devnull,
        "StrictHostKeyChecking": "yes",
        "BatchMode": "yes",
        "IdentitiesOnly": "yes",
        "KexAlgorithms": variant.kex,
        "Ciphers": variant.cipher,
        "HostKeyAlgorithms": variant.host_key,
        "LogLevel": "ERROR",
    }
    argv = ["ssh", "-F", os.devnull, "-i", str(ctx.key_files[variant.client_key])]
    for name, value in options.items():
        argv += ["-o", f"{name}={value}"]
    argv += ["-p", str(port), f"{username}@{hostname}", COMMAND]
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"ssh exited {process.returncode}: {stderr.decode().strip()[:200]}")


async def _login_all(variant: Variant, ctx: Context) -> list[str]:
    """Log in to every host with *variant*; the failures (host: reason)."""
    limit = ctx.openssh_concurrency if variant.mode == "openssh" else ctx.concurrency
    slots = asyncio.Semaphore(limit)

    async def one(target: tuple[str, int, str]) -> str | None:
        async with slots:
            try:
                if variant.mode == "banner":
                    await _banner_only(target)
                elif variant.mode == "openssh":
                    await _openssh_login(target, variant, ctx)
                else:
                    await _asyncssh_login(target, variant, ctx)
            except (OSError, asyncssh.Error, RuntimeError) as exc:
                return f"{target[0]}: {type(exc).__name__}: {exc}"
            return None

    results = await asyncio.gather(*(one(t) for t in _address_targets(ctx.fleet, ctx.hosts)))
    return [reason for reason in results if reason is not None]


# -- measuring -----------------------------------------------------------------------------


def _sessions_left(fleet: SshdFleet) -> int:
    """sshd processes in the cgroup besides the listeners."""
    procs = (fleet.cgroup.path / "cgroup.procs").read_text().split()
    return len(procs) - len(fleet.servers)


def settle(fleet: SshdFleet) -> None:
    """Wait (polling, with a deadline) until every session process has exited."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while _sessions_left(fleet) > 0:
        if time.monotonic() > deadline:
            print(f"warning: {_sessions_left(fleet)} sshd sessions still open", file=sys.stderr)
            return
        time.sleep(0.02)


def measure(variant: Variant, ctx: Context) -> Sample:
    settle(ctx.fleet)
    sshd_before, cpu_before = ctx.fleet.sshd_cpu(), cpu_seconds()
    busy_before, started = machine_busy(), time.perf_counter()
    failures = asyncio.run(_login_all(variant, ctx))
    wall, client = time.perf_counter() - started, cpu_seconds() - cpu_before
    settle(ctx.fleet)
    busy = machine_busy() - busy_before
    server = ctx.fleet.sshd_cpu() - sshd_before
    per_login = 1000 / ctx.hosts
    return Sample(
        server_ms=server * per_login,
        client_ms=client * per_login,
        wall=wall,
        other_ms=(busy - client - server) * per_login,
        failures=failures,
    )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sshd_t_ms(config: Path, runs: int) -> list[float]:
    """CPU ms of each of *runs* ``sshd -t -f CONFIG`` (parse config, load host keys)."""
    samples = []
    for _ in range(runs):
        before = _children_cpu()
        subprocess.run([_sshd(), "-t", "-f", str(config)], check=True)
        samples.append((_children_cpu() - before) * 1000)
    return samples


def sshd_t_table(fleet: SshdFleet, keydir: Path, runs: int) -> str:
    """``sshd -t`` of a daemon's config as it is (3 host keys) and with ed25519 only,
    interleaved."""
    config = fleet.servers[0].root / "sshd_config"
    only_ed25519 = keydir / "sshd_config_ed25519_only"
    kept = [line for line in config.read_text().splitlines() if str(keydir) not in line]
    only_ed25519.write_text("\n".join(kept) + "\n")
    cases: dict[str, list[float]] = {"3 host keys": [], "ed25519 host key only": []}
    for _ in range(runs):
        cases["3 host keys"] += sshd_t_ms(config, 1)
        cases["ed25519 host key only"] += sshd_t_ms(only_ed25519, 1)
    lines = ["| `sshd -t` of a fleet daemon's config | CPU ms per run, median [min-max] |"]
    lines.append("|---|---|")
    lines += [f"| {name} | {_spread(values, 2)} |" for name, values in cases.items()]
    return "\n".join(lines)


def _keygen_y(argv: list[str], stdin: bytes) -> float:
    """CPU ms of one ``ssh-keygen -Y ...`` (its process start included)."""
    before = _children_cpu()
    subprocess.run(["ssh-keygen", "-Y", *argv], input=stdin, capture_output=True, check=True)
    return (_children_cpu() - before) * 1000


def primitives_table(key_files: dict[str, Path], keydir: Path, runs: int) -> str:
    """OpenSSH's own signing and verifying per key type (``ssh-keygen -Y sign/verify``,
    the code sshd runs for its host key signature and the client key's), interleaved."""
    data = b"hostbatch" * 8
    signs: dict[str, list[float]] = {kind: [] for kind in key_files}
    verifies: dict[str, list[float]] = {kind: [] for kind in key_files}
    for kind, path in key_files.items():
        allowed = keydir / f"allowed_{kind}"
        allowed.write_text("bench " + Path(f"{path}.pub").read_text())
    for _ in range(runs):
        for kind, path in key_files.items():
            sign = ["sign", "-f", str(path), "-n", "file", "-"]
            signs[kind].append(_keygen_y(sign, data))
            signature = subprocess.run(
                ["ssh-keygen", "-Y", *sign], input=data, capture_output=True, check=True
            ).stdout
            (keydir / f"sig_{kind}").write_bytes(signature)
            verify = ["verify", "-f", str(keydir / f"allowed_{kind}"), "-I", "bench"]
            verify += ["-n", "file", "-s", str(keydir / f"sig_{kind}")]
            verifies[kind].append(_keygen_y(verify, data))
    lines = ["| `ssh-keygen -Y`, one process each | sign CPU ms | verify CPU ms |"]
    lines.append("|---|---|---|")
    lines += [
        f"| {kind} | {_spread(signs[kind])} | {_spread(verifies[kind])} |" for kind in key_files
    ]
    return "\n".join(lines)


# -- report --------------------------------------------------------------------------------


def _spread(values: Sequence[float], digits: int = 2) -> str:
    if not values:
        return "-"
    return (
        f"{statistics.median(values):.{digits}f} "
        f"[{min(values):.{digits}f}-{max(values):.{digits}f}]"
    )


def _paired(samples: list[Sample], base: list[Sample]) -> str:
    """Median [range] of (variant - base) server ms per login, round by round."""
    return _spread([s.server_ms - b.server_ms for s, b in zip(samples, base, strict=False)])


def table(variants: Sequence[Variant], runs: dict[str, list[Sample]], hosts: int) -> str:
    lines = [
        "| variant | group | kex / cipher / host key / client key | server CPU ms/login | "
        "server minus base, same round | client CPU ms/login | wall s (N logins) | "
        "other CPU ms/login | failed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = runs.get("base", [])
    for variant in variants:
        samples = runs[variant.key]
        what = f"{variant.kex} / {variant.cipher} / {variant.host_key} / {variant.client_key}"
        if variant.mode in ("auth", "banner"):
            what = {"auth": "base, closed after auth", "banner": "TCP + banner, closed"}[
                variant.mode
            ]
        failed = sum(len(s.failures) for s in samples)
        lines.append(
            f"| {variant.key} | {variant.group} | {what} "
            f"| {_spread([s.server_ms for s in samples])} "
            f"| {_paired(samples, base) if base and variant is not BASE else '-'} "
            f"| {_spread([s.client_ms for s in samples])} "
            f"| {_spread([s.wall for s in samples])} "
            f"| {_spread([s.other_ms for s in samples], 1)} "
            f"| {failed}/{hosts * len(samples)} |"
        )
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="server CPU per login, by SSH algorithm")
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=50, help="asyncssh logins at once")
    parser.add_argument("--openssh-concurrency", type=int, default=16, help="ssh processes")
    parser.add_argument("--sshd-t-runs", type=int, default=20)
    parser.add_argument("--only", default="", help="comma-separated variant keys")
    return parser.parse_args(argv)


def _choose(only: str, server: dict[str, list[str]]) -> tuple[list[Variant], list[str]]:
    wanted = [v for v in VARIANTS if not only or v.key in only.split(",") or v is BASE]
    chosen, skipped = [], []
    for variant in wanted:
        reason = why_not(variant, server)
        if reason is None:
            chosen.append(variant)
        else:
            skipped.append(f"- `{variant.key}` ({variant.kex}) skipped: {reason}")
    return chosen, skipped


def run_rounds(variants: list[Variant], ctx: Context, rounds: int) -> dict[str, list[Sample]]:
    runs: dict[str, list[Sample]] = {v.key: [] for v in variants}
    for number in range(rounds):
        shift = number % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            sample = measure(variant, ctx)
            runs[variant.key].append(sample)
            print(
                f"round {number + 1}/{rounds} {variant.key}: server {sample.server_ms:.2f} "
                f"client {sample.client_ms:.2f} ms/login, wall {sample.wall:.2f}s, "
                f"failed {len(sample.failures)} {sample.failures[:1]}",
                file=sys.stderr,
            )
    return runs


NOTES = """\
server CPU: every sshd process (listeners, pre-auth children, privsep monitors, sessions,
the shell running `true`), the cgroup's cpuacct delta from before the batch until its last
session process exited, divided by the logins. "server minus base" pairs each round's run
with base's run of the same round (less hit by the machine's drift than comparing medians).
client CPU: this process (asyncssh) or its `ssh` children (openssh-*), per login.
other CPU: the machine's busy CPU in the same window minus client and server, per login:
colleagues' jobs and kernel work (loopback TCP); large values mean a disturbed round.
Medians and [min-max] over the rounds."""


def main(argv: list[str]) -> int:
    args = _parse(argv)
    with tempfile.TemporaryDirectory(prefix="hostbatch-bench-algs-") as tmp:
        keydir = Path(tmp)
        with sshd_fleet(args.hosts, extra_config=host_key_config(keydir)) as fleet:
            if not fleet.cgroup.available:
                print("no cpuacct cgroup: server CPU would miss sessions", file=sys.stderr)
                return 2
            known_hosts, key_files = prepare_keys(fleet, args.hosts, keydir)
            variants, skipped = _choose(args.only, server_algorithms(fleet))
            ctx = Context(
                fleet=fleet,
                hosts=args.hosts,
                known_hosts=known_hosts,
                key_files=key_files,
                keys={k: asyncssh.read_private_key(p) for k, p in key_files.items()},
                known=asyncssh.read_known_hosts(str(known_hosts)),
                concurrency=args.concurrency,
                openssh_concurrency=args.openssh_concurrency,
            )
            runs = run_rounds(variants, ctx, args.rounds)
            sshd_t = sshd_t_table(fleet, keydir, args.sshd_t_runs)
            sshd_t += "\n\n" + primitives_table(key_files, keydir, args.sshd_t_runs)
    text = report(args, variants, skipped, runs, sshd_t)
    save_report("algorithms", text)
    return 1 if any(s.failures for samples in runs.values() for s in samples) else 0


def report(
    args: argparse.Namespace,
    variants: list[Variant],
    skipped: list[str],
    runs: dict[str, list[Sample]],
    sshd_t: str,
) -> str:
    daemons = -(-args.hosts // ADDRESSES_PER_DAEMON)
    return (
        f"# server CPU per login by SSH algorithm, {time.strftime('%Y-%m-%d %H:%M')}\n\n"
        f"{environment()}\n"
        f"- {args.hosts} hosts on {daemons} sshd daemons (each with ed25519, ECDSA P-256 and "
        f"RSA 3072 host keys), `{COMMAND}` on each, {args.rounds} interleaved rounds, "
        f"{args.concurrency} asyncssh logins at once ({args.openssh_concurrency} ssh)\n"
        + "".join(f"{line}\n" for line in skipped)
        + f"\n{table(variants, runs, args.hosts)}\n\n{sshd_t}\n\n{NOTES}\n"
        + f"\nrerun: `{shlex.join(['.venv/bin/python', 'bench/algorithms.py', *sys.argv[1:]])}`\n"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
