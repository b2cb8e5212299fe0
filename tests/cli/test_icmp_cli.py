"""`hostbatch ping --icmp`: loopback addresses only, and a network namespace the test makes.

Never any address outside 127.0.0.0/8: the no-reply case runs hostbatch inside a namespace
created here, where only 127.0.0.1/32 is configured, so 127.0.0.2 has no route.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.cli.ping import format_icmp
from hostbatch.engine.icmp import EchoResult, ping_group_allows, sort_results
from tests.fixtures.cli import cli_argv, cli_env, run_cli


def test_icmp_loopback_addresses_reply() -> None:
    result = run_cli(
        "ping", "--icmp", "127.0.0.1,127.0.0.2", "--count", "2", "--interval", "0.05", "--json"
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["host"] for r in rows] == ["127.0.0.1", "127.0.0.2"]
    for row in rows:
        assert (row["status"], row["sent"], row["received"], row["loss_percent"]) == (
            "reachable", 2, 2, 0.0,
        )  # fmt: skip
        assert 0 < row["rtt_min_ms"] <= row["rtt_avg_ms"] <= row["rtt_max_ms"]
    assert result.stderr.strip() == "2/2 hosts replying"


def test_icmp_table_from_a_hostfile(tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts.txt"
    hostfile.write_text("127.0.0.3\n# 127.0.0.4 is commented out\n127.0.0.5\n")
    result = run_cli("ping", "--icmp", "--hostfile", str(hostfile), "--count", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["HOST", "ADDRESS", "STATUS", "LOSS", "RTT", "MIN/AVG/MAX", "MS"]
    assert [line.split()[:4] for line in lines[1:]] == [
        ["127.0.0.3", "127.0.0.3", "reachable", "0%"],
        ["127.0.0.5", "127.0.0.5", "reachable", "0%"],
    ]


@pytest.fixture
def namespace() -> Iterator[str]:
    """A network namespace of our own: lo up with 127.0.0.1/32 only."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    name = f"hbtest-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.decode().strip()}")
    try:
        for command in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "del", "127.0.0.1/8", "dev", "lo"],
            ["ip", "addr", "add", "127.0.0.1/32", "dev", "lo"],
        ):
            subprocess.run(["ip", "netns", "exec", name, *command], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def in_namespace(name: str, *args: str, drop_raw: bool = False) -> subprocess.CompletedProcess[str]:
    """hostbatch inside the namespace; *drop_raw*: without CAP_NET_RAW (no raw sockets)."""
    setpriv = ["setpriv", "--inh-caps=-net_raw", "--bounding-set=-net_raw"] if drop_raw else []
    return subprocess.run(
        ["ip", "netns", "exec", name, *setpriv, *cli_argv(*args)],
        env=cli_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_icmp_no_reply_in_own_namespace_exits_3(namespace: str) -> None:
    result = in_namespace(
        namespace, "ping", "--icmp", "127.0.0.2,127.0.0.1", "--count", "2", "--timeout", "0.5"
    )
    assert result.returncode == 3, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert rows[0][:4] == ["127.0.0.1", "127.0.0.1", "reachable", "0%"]
    assert rows[1] == ["127.0.0.2", "127.0.0.2", "no", "reply", "100%", "(0/0)", "-"]
    assert result.stderr.strip() == "1/2 hosts replying; not replying: 127.0.0.2"


def test_icmp_without_raw_sockets_uses_datagram_sockets_or_explains(namespace: str) -> None:
    """Without CAP_NET_RAW only an unprivileged ICMP socket can work: it does where the
    namespace's ping_group_range allows our group, else a one-line error says how."""
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to drop CAP_NET_RAW")
    sysctl = ["ip", "netns", "exec", namespace, "sysctl", "-qw"]
    subprocess.run([*sysctl, "net.ipv4.ping_group_range=0 2147483647"], check=True)
    allowed = in_namespace(namespace, "ping", "--icmp", "127.0.0.1", "--count", "1", drop_raw=True)
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.splitlines()[1].split()[2] == "reachable"
    subprocess.run([*sysctl, "net.ipv4.ping_group_range=1 0"], check=True)
    refused = in_namespace(namespace, "ping", "--icmp", "127.0.0.1", "--count", "1", drop_raw=True)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        "hostbatch: error: ICMP needs raw sockets (root with CAP_NET_RAW) or unprivileged ICMP "
        "sockets: allow your group with sysctl -w net.ipv4.ping_group_range='0 2147483647'"
    ]


def test_no_reply_formatting_and_sorting() -> None:
    results = sort_results(
        [
            EchoResult("web10", "127.0.0.10", 3, 0),
            EchoResult("web2", "127.0.0.2", 3, 2, 0.1, 0.2, 0.3),
            EchoResult("bad", "bad", 0, 0, error="cannot resolve"),
        ]
    )
    assert [r.host for r in results] == ["web2", "bad", "web10"]
    lines = format_icmp(results).splitlines()
    assert lines[1].split() == [
        "web2",
        "127.0.0.2",
        "reachable",
        "33%",
        "(2/3)",
        "0.100/0.200/0.300",
    ]
    assert lines[2].split() == ["bad", "bad", "no", "reply", "100%", "(0/0)", "cannot", "resolve"]
    assert lines[3].split() == ["web10", "127.0.0.10", "no", "reply", "100%", "(0/3)", "-"]
    painted = format_icmp(results, color=True).splitlines()
    assert "\x1b[32mreachable" in painted[1] and "\x1b[1;31mno reply" in painted[3]


@pytest.mark.parametrize(
    ("text", "gids", "allowed"),
    [("0 2147483647", [1000], True), ("1 0", [0], False), ("100 200", [50, 150], True)],
)
def test_ping_group_range(text: str, gids: list[int], allowed: bool) -> None:
    assert ping_group_allows(gids, text) is allowed


def test_missing_icmplib_names_the_extra() -> None:
    """Without icmplib installed (hidden from this process), one line says what to install."""
    code = "import sys; sys.modules['icmplib'] = None; from hostbatch.cli.app import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "ping", "--icmp", "127.0.0.1"],
        env=cli_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == (
        "hostbatch: error: ping --icmp needs the 'icmplib' package: pip install 'hostbatch[icmp]'\n"
    )
