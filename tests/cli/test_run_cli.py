"""`hostbatch run` and the seed's `batch_run` end to end against the in-process fleet."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.testing import Fleet, FleetThread
from tests.fixtures.cli import Program, run_cli

BEHAVIOURS = {"node03": "refuse_auth", "node05": "refuse_connect"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, Path]]:
    with FleetThread(6, behaviours=BEHAVIOURS) as started:
        inventory = started.write_inventory(tmp_path_factory.mktemp("i") / "inventory")
        yield started, inventory


def cli(
    fleet: tuple[Fleet, Path],
    *args: str,
    program: Program = "hostbatch",
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    started, inventory = fleet
    return run_cli(
        *args,
        "-i",
        str(inventory),
        "--known-hosts",
        str(started.known_hosts),
        "--connect-timeout",
        "3",
        *extra,
        program=program,
        timeout=90,
    )


def run_args(*selection: str, command: str) -> tuple[str, ...]:
    return ("run", *selection, "-c", command)


def test_all_ok_exit_0_prefixed_lines(fleet: tuple[Fleet, Path]) -> None:
    result = cli(fleet, *run_args("-h", "node01,node02,node04", command="echo hi; echo oops >&2"))
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == ["node01 | hi", "node02 | hi", "node04 | hi"]
    assert "node02 ! oops" in result.stderr
    assert "3 hosts in" in result.stderr and "3 ok" in result.stderr
    assert "\x1b[" not in result.stdout  # plain when piped


def test_command_failure_exit_1_folded(fleet: tuple[Fleet, Path]) -> None:
    result = cli(
        fleet,
        *run_args(
            "-h",
            "node0[1-2],node04,node06",
            command=("case $HOSTBATCH_FLEET_HOST in node01|node02|node06) exit 4;; esac"),
        ),
    )
    assert result.returncode == 1
    assert "node01 ✗ command failed: exit status 4" in result.stderr
    assert "command failed    node[01-02,06]" in result.stderr


def test_unreachable_and_auth_exit_3(fleet: tuple[Fleet, Path]) -> None:
    result = cli(fleet, *run_args("-g", "fleet", command="true"))
    assert result.returncode == 3
    assert "unreachable       node05" in result.stderr
    assert "auth failed       node03" in result.stderr
    assert "4 ok" in result.stderr


def test_json_lines(fleet: tuple[Fleet, Path]) -> None:
    result = cli(fleet, *run_args("-h", "node01,node03", "--json", command="printf '\\377x'"))
    records = {r["host"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert records["node01"]["status"] == "ok" and records["node01"]["exit_status"] == 0
    assert records["node01"]["stdout"] is None and records["node01"]["stdout_base64"] == "/3g="
    assert records["node03"]["status"] == "auth_failed" and records["node03"]["error"]


def test_gather_folds_identical_output(fleet: tuple[Fleet, Path]) -> None:
    result = cli(fleet, *run_args("-h", "node01,node02,node04", "-b", command="echo same"))
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["---------------- node[01-02,04]", "same"]


def test_seed_batch_run_form(fleet: tuple[Fleet, Path]) -> None:
    result = cli(
        fleet, "-h", "node01,node02", "-g", "fleet", "-cmd", "echo seed", program="batch_run"
    )
    assert "node01 | seed" in result.stdout and "node06 | seed" in result.stdout
    assert result.stdout.count("node01 | seed") == 1  # each host once
    assert result.returncode == 3  # node03 / node05 misbehave


def test_unknown_group_exit_2_nothing_run(fleet: tuple[Fleet, Path]) -> None:
    result = cli(fleet, *run_args("-g", "flet", command="true"))
    assert result.returncode == 2
    assert "unknown group 'flet'; did you mean 'fleet'?" in result.stderr
    assert result.stdout == ""


def test_unknown_host_key_fails_with_its_reason(fleet: tuple[Fleet, Path], tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    result = cli(
        fleet, *run_args("-h", "node01", command="true"), extra=("--known-hosts", str(empty))
    )
    assert result.returncode == 3
    assert "host key rejected" in result.stderr and "accept-new" in result.stderr
    accepted = cli(
        fleet,
        *run_args("-h", "node01", "--host-keys", "accept-new", command="true"),
        extra=("--known-hosts", str(empty)),
    )
    assert accepted.returncode == 0, accepted.stderr
    assert "[127.0.0.1]:" in empty.read_text()


def test_host_keys_off_warns(fleet: tuple[Fleet, Path]) -> None:
    result = cli(fleet, *run_args("-h", "node01", "--host-keys", "off", command="true"))
    assert result.returncode == 0
    assert "host key checking is OFF" in result.stderr


def test_no_password_in_any_output(fleet: tuple[Fleet, Path], tmp_path: Path) -> None:
    started, _ = fleet
    inventory = started.write_inventory(tmp_path / "pw", auth="password")
    result = cli((started, inventory), *run_args("-g", "fleet", "--json", command="echo x"))
    assert started.password not in result.stdout + result.stderr
    assert result.returncode == 3  # node03 refuses auth, node05 refuses connections


def test_run_help_has_examples() -> None:
    result = run_cli("run", "--help", timeout=30)
    assert result.returncode == 0 and "Examples:" in result.stdout
    assert "--fanout" in result.stdout and "Exit code" in result.stdout


def test_several_commands_kept_apart_in_json(fleet: tuple[Fleet, Path]) -> None:
    result = cli(
        fleet, "run", "-h", "node01", "--json", "-c", "echo first", "-c", "echo second; exit 2"
    )
    record = json.loads(result.stdout)
    assert [o["command"] for o in record["outputs"]] == ["echo first", "echo second; exit 2"]
    assert [o["output"] for o in record["outputs"]] == ["first\n", "second\n"]
    assert [o["exit_status"] for o in record["outputs"]] == [0, 2]
    assert record["status"] == "failed" and result.returncode == 1


def test_config_on_a_server_fails_that_host_clearly(fleet: tuple[Fleet, Path]) -> None:
    result = cli(fleet, "run", "-h", "node01", "--config", "vlan 42")
    assert result.returncode == 1
    assert "need a network device; node01 has no device_type" in result.stderr
