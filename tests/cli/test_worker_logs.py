"""Worker processes log as the CLI was told: -v/--debug/HOSTBATCH_LOG's level, on stderr or
in --log-file, secrets masked. Real hosts (the test OpenSSH sshd, password logins) and
real worker processes (--workers 2): every host runs in a worker, so each host's debug
line can only come from one."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from hostbatch.testing.sshd import OpenSSHServer
from tests.fixtures.cli import run_cli
from tests.fixtures.sshd import write_sshd_inventory

pytestmark = pytest.mark.sshd
HOSTS = 4
PASSWORD_VAR = "HB_TEST_WORKER_LOG_PW"


@pytest.fixture
def password_inventory(sshd: OpenSSHServer, tmp_path: Path) -> Path:
    if sshd.password is None:
        pytest.skip("the test user has no password (sshd cannot read the shadow file)")
    auth = f"password_env = {PASSWORD_VAR}"
    return write_sshd_inventory(sshd, tmp_path / "inventory.ini", HOSTS, auth=auth)


def run_in_workers(
    sshd: OpenSSHServer, inventory: Path, *log_flags: str
) -> subprocess.CompletedProcess[str]:
    assert sshd.password is not None
    common = ("-i", str(inventory), "--ssh-config", "", "--known-hosts", str(sshd.known_hosts))
    return run_cli(
        *log_flags,
        *("run", *common, "-h", "all", "--workers", "2", "--", "echo ok"),
        env={PASSWORD_VAR: sshd.password, "HOSTBATCH_LOG": ""},
    )


def assert_worker_records(text: str, password: str) -> None:
    workers = set(re.findall(r"INFO hostbatch: worker process (\d+): ", text))
    assert len(workers) == 2, text  # two worker pids, each logged on its own
    for i in range(1, HOSTS + 1):
        assert f"DEBUG hostbatch: h{i}: connecting to 127.0.0.1:" in text, text
        assert f"DEBUG hostbatch: h{i}: done (ok)" in text, text
    assert "DEBUG asyncssh" in text  # the SSH library's records, from the workers too
    assert password not in text


def test_workers_debug_lines_reach_stderr_without_the_password(
    sshd: OpenSSHServer, password_inventory: Path
) -> None:
    assert sshd.password is not None
    done = run_in_workers(sshd, password_inventory, "--debug")
    assert done.returncode == 0, done.stderr
    assert_worker_records(done.stderr, sshd.password)
    assert sshd.password not in done.stdout


def test_workers_append_to_the_log_file(
    sshd: OpenSSHServer, password_inventory: Path, tmp_path: Path
) -> None:
    assert sshd.password is not None
    log_file = tmp_path / "hostbatch.log"
    log_file.write_text("earlier line\n")
    done = run_in_workers(sshd, password_inventory, "-vv", "--log-file", str(log_file))
    assert done.returncode == 0, done.stderr
    assert "hostbatch: DEBUG" not in done.stderr and "hostbatch: INFO" not in done.stderr
    text = log_file.read_text()
    assert text.startswith("earlier line\n")  # appended, not truncated
    assert_worker_records(text, sshd.password)
    # three processes wrote at once: every record is whole, none cut into another
    for line in text.splitlines()[1:]:
        assert line.startswith("hostbatch: ") or line.startswith(("  ", "Traceback")), line


def test_info_level_keeps_debug_out_of_the_workers(
    sshd: OpenSSHServer, password_inventory: Path
) -> None:
    done = run_in_workers(sshd, password_inventory, "-v")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("INFO hostbatch: worker process") == 2, done.stderr
    assert "DEBUG" not in done.stderr


def test_a_log_file_that_cannot_be_written_is_a_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "hostbatch.log"
    done = run_cli("--debug", "--log-file", str(target), "hosts", "-h", "127.0.0.1")
    assert done.returncode == 2
    assert done.stderr.startswith(f"hostbatch: error: cannot write --log-file {target}: ")
    assert "Traceback" not in done.stderr
