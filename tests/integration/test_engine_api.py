"""The API beyond run(): ping(), transfers with a deadline, a put repeated in one process,
and what the engine logs (an internal error's traceback; never a secret)."""

from __future__ import annotations

import io
import logging
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

import hostbatch
from hostbatch.api import RunOptions, get, ping, put, run, run_plan
from hostbatch.engine.limits import Limits
from hostbatch.engine.plan import Plan
from hostbatch.engine.probe import ProbeResult, probe_all
from hostbatch.logs import LIBRARY_LOGGERS, LOGGER_NAME, MASK, configure, logger
from hostbatch.models import Credentials, Host, Secret, Status
from hostbatch.testing import Fleet, FleetThread
from hostbatch.testing.sshd import OpenSSHServer
from hostbatch.transport.base import ConnectOptions

BEHAVIOURS = {"node02": "refuse_auth", "node03": "hang_before_banner", "node04": "refuse_connect"}


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with FleetThread(4, behaviours=BEHAVIOURS) as started:
        yield started


def fleet_hosts(fleet: Fleet, *names: str) -> list[Host]:
    creds = Credentials(fleet.username, key_file=str(fleet.client_key))
    return [Host(h.name, h.address, h.port, creds) for h in fleet.hosts if h.name in names]


def fleet_options(fleet: Fleet, **limits: Any) -> RunOptions:
    connect = ConnectOptions(connect_timeout=1.0, known_hosts=str(fleet.known_hosts))
    return RunOptions(Limits(**limits), connect)


@pytest.fixture
def captured_log() -> Iterator[io.StringIO]:
    """hostbatch's logging configured at DEBUG into a buffer; the loggers restored after."""
    names = (LOGGER_NAME, *LIBRARY_LOGGERS)
    saved = {n: (logging.getLogger(n).level, logging.getLogger(n).propagate) for n in names}
    buffer = io.StringIO()
    configure(logging.DEBUG, buffer)
    yield buffer
    configure(None)
    for name, (level, propagate) in saved.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).propagate = propagate


def test_ping_reports_each_host_in_selection_order(fleet: Fleet) -> None:
    seen: list[ProbeResult] = []
    hosts = fleet_hosts(fleet, "node01", "node02", "node03", "node04")
    results = hostbatch.ping(hosts, options=fleet_options(fleet), on_result=seen.append)
    assert list(results) == ["node01", "node02", "node03", "node04"]
    assert {n: r.status for n, r in results.items()} == {
        "node01": "ok",
        "node02": "auth failed",
        "node03": "no banner",
        "node04": "refused",
    }
    assert results["node01"].ok and (results["node01"].banner or "").startswith("SSH-2.0")
    assert sorted(r.host for r in seen) == sorted(results)


def test_ping_selects_like_run(fleet: Fleet, tmp_path: Path) -> None:
    inventory = fleet.write_inventory(tmp_path / "inventory", auth="key")
    options = fleet_options(fleet)
    by_pattern = ping(patterns="node0[1-2]", inventory=inventory, options=options)
    by_name = ping("node01,node02", inventory=inventory, options=options)
    assert list(by_pattern) == list(by_name) == ["node01", "node02"]
    ran = run("true", patterns="node0[1-2]", inventory=inventory, options=options)
    assert list(ran) == list(by_pattern)


async def test_probe_all_keeps_the_signature_the_cli_uses(fleet: Fleet) -> None:
    hosts = fleet_hosts(fleet, "node01", "node04")
    options = fleet_options(fleet).connect
    results = await probe_all(hosts, options, transport="asyncssh", fanout=1)
    assert [(r.host, r.status) for r in results] == [("node01", "ok"), ("node04", "refused")]


def test_put_twice_in_one_process_sends_the_new_file(fleet: Fleet, tmp_path: Path) -> None:
    local = tmp_path / "app.conf"
    hosts = fleet_hosts(fleet, "node01")
    remote = f"twice-{secrets.token_hex(4)}.conf"
    local.write_bytes(b"a" * 5000)
    first = put(local, remote, hosts, options=fleet_options(fleet))["node01"]
    local.write_bytes(b"second version\n" * 7)  # 105 bytes: smaller than the first
    second = put(local, remote, hosts, options=fleet_options(fleet))["node01"]
    assert first.ok and second.ok, (first.error, second.error)
    assert second.bytes_transferred == 105
    assert (fleet.hosts[0].root / remote).read_bytes() == local.read_bytes()


def test_put_and_get_accept_patterns(fleet: Fleet, tmp_path: Path) -> None:
    inventory = fleet.write_inventory(tmp_path / "inventory", auth="key")
    local = tmp_path / "p.txt"
    local.write_text("by pattern")
    remote = f"pattern-{secrets.token_hex(4)}.txt"
    options = fleet_options(fleet)
    sent = put(local, remote, patterns="node01", inventory=inventory, options=options)
    got = get(remote, tmp_path / "out", patterns="node01", inventory=inventory, options=options)
    assert sent["node01"].ok and got["node01"].ok
    assert (tmp_path / "out" / "node01" / remote).read_text() == "by pattern"


def test_verify_gets_the_time_the_transfer_has_left(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the fleet's commands find this sha256sum first: it never finishes on its own
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pid_file = tmp_path / "sha256sum.pid"
    fake = bin_dir / "sha256sum"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    local = tmp_path / "v.txt"
    local.write_text("verified")
    options = fleet_options(fleet, command_timeout=1.0)
    hosts = fleet_hosts(fleet, "node01")
    result = put(local, f"v-{secrets.token_hex(4)}.txt", hosts, verify=True, options=options)
    assert result["node01"].status is Status.TIMEOUT
    assert result["node01"].error == "put did not finish within its 1s timeout"
    assert result["node01"].elapsed < 6  # not verify's former 60 s
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()  # the remote sha256sum was stopped


def _sshd_host(sshd: OpenSSHServer) -> Host:
    creds = Credentials(sshd.username, key_file=str(sshd.client_key))
    return Host("s1", sshd.host, sshd.port, creds)


def _sshd_options(sshd: OpenSSHServer, timeout: float) -> RunOptions:
    connect = ConnectOptions(connect_timeout=5, known_hosts=str(sshd.known_hosts))
    return RunOptions(Limits(command_timeout=timeout), connect)


def test_get_past_its_deadline_times_out_and_leaves_no_file(
    sshd: OpenSSHServer, sshd_remote_dir: Path, tmp_path: Path
) -> None:
    big = sshd_remote_dir / "big.img"
    with big.open("wb") as handle:
        handle.truncate(8 << 30)  # 8 GiB, sparse: far more than loopback moves in 0.5 s
    out = tmp_path / "out"
    result = get(str(big), out, _sshd_host(sshd), options=_sshd_options(sshd, 0.5))["s1"]
    assert result.status is Status.TIMEOUT
    assert result.error == "get did not finish within its 0.5s timeout"
    assert result.elapsed < 10
    assert [p.name for p in (out / "s1").iterdir()] == []  # temporary file removed


def test_put_past_its_deadline_times_out_and_removes_the_temporary(
    sshd: OpenSSHServer, sshd_remote_dir: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big.img"
    with big.open("wb") as handle:  # real data: asyncssh sends a sparse file's holes as nothing
        for _ in range(256):
            handle.write(b"\x01" * (1 << 20))
    options = _sshd_options(sshd, 0.3)
    result = put(big, f"{sshd_remote_dir}/", _sshd_host(sshd), options=options)["s1"]
    assert result.status is Status.TIMEOUT, result.error
    assert result.error == "put did not finish within its 0.3s timeout"
    assert list(sshd_remote_dir.iterdir()) == []


class _Unreadable:
    """An operation no caller should pass: reading it raises, quoting a secret."""

    def __init__(self, secret: Secret) -> None:
        self.secret = secret

    @property
    def direction(self) -> str:
        raise RuntimeError(f"cannot read the operation (token {self.secret.reveal()})")


async def test_an_internal_error_is_logged_with_its_traceback_and_no_secret(
    fleet: Fleet, captured_log: io.StringIO
) -> None:
    secret = Secret(f"tok-{secrets.token_hex(8)}")
    operation = cast(Any, _Unreadable(secret))
    plan = Plan(
        operation, tuple(fleet_hosts(fleet, "node01")), options=fleet_options(fleet).connect
    )
    result = (await run_plan(plan))["node01"]
    assert result.status is Status.ERROR
    assert (result.error or "").startswith("internal error: RuntimeError: cannot read")
    assert secret.reveal() not in (result.error or "") and MASK in (result.error or "")
    text = captured_log.getvalue()
    assert "node01: internal error" in text
    assert "Traceback (most recent call last)" in text and "in direction" in text
    assert "node01: connecting to 127.0.0.1:" in text and "node01: connection closed" in text
    assert secret.reveal() not in text and f"token {MASK}" in text


def test_no_secret_reaches_a_log_record(captured_log: io.StringIO) -> None:
    value = f"pw-{secrets.token_hex(8)}"
    Secret(value)
    logger.warning(f"in the message: {value}")
    logger.warning("in the args: %s", value)
    try:
        raise ValueError(f"in the exception: {value}")
    except ValueError:
        logger.exception("failed")
    text = captured_log.getvalue()
    assert value not in text
    assert text.count(MASK) == 3 and "in the exception: " + MASK in text
