"""`hostbatch hosts` from the command line: table, JSON, selection, bad input (exit 2)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
DEMO_INVENTORY = ROOT / "examples" / "inventory"


def hostbatch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=env)


def test_hosts_json_on_demo_inventory() -> None:
    result = hostbatch("hosts", "-i", str(DEMO_INVENTORY), "--json", "--ssh-config", "")
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    by_name = {r["name"]: r for r in records}
    assert set(by_name) == {"web01", "web02", "web03", "db01", "db02"}
    assert set(by_name["web03"]["groups"]) == {"web_clusters", "db_servers"}
    assert by_name["web03"]["port"] == 2222
    assert by_name["db02"]["username"] == "postgres"


def test_seed_selection_table() -> None:
    result = hostbatch(
        "hosts", "-i", str(DEMO_INVENTORY), "-h", "web01", "-g", "db_servers", "--ssh-config", ""
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "GROUPS", "ADDRESS", "PORT", "USER", "AUTH", "TRANSPORT"]
    assert [line.split()[0] for line in lines[1:]] == ["web01", "db01", "db02", "web03"]


def test_passwords_masked_in_table_and_json(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.ini"
    inv.write_text("[h1]\nhostname = 127.0.0.1\npassword = hunter2-secret\n")
    inv.chmod(0o600)
    for extra in ((), ("--json",)):
        result = hostbatch("hosts", "-i", str(inv), "--ssh-config", "", *extra)
        assert result.returncode == 0
        assert "hunter2-secret" not in result.stdout + result.stderr
    shown = json.loads(hostbatch("hosts", "-i", str(inv), "--json").stdout)[0]
    assert shown["password"] == "********" and shown["auth"] == "password"


def test_environment_variable_finds_inventory() -> None:
    result = hostbatch("hosts", "--json", env={"HOSTBATCH_INVENTORY": str(DEMO_INVENTORY)})
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 5


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[h1]\nhostname = a\nbroken line\n", "web.ini:3: syntax error"),
        ("[h1]\nport = 22\n", "web.ini:1: host 'h1' has no hostname"),
        ("[h1]\nhostname = a\nport = abc\n", "web.ini:3: host 'h1': port 'abc' is not a number"),
        ("[h1]\nhostname = a\nport = 99999\n", "web.ini:3: host 'h1': port 99999 is out of range"),
    ],
)
def test_bad_inventory_exit_2_no_traceback(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "web.ini").write_text(content)
    result = hostbatch("hosts", "-i", str(tmp_path / "inv"))
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_conflicting_duplicate_host_exit_2(tmp_path: Path) -> None:
    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "web.ini").write_text("[h1]\nhostname = a\nport = 22\n")
    (tmp_path / "inv" / "db.ini").write_text("[h1]\nhostname = a\nport = 23\n")
    result = hostbatch("hosts", "-i", str(tmp_path / "inv"))
    assert result.returncode == 2
    assert "host 'h1' is defined twice with conflicting values for 'port'" in result.stderr


def test_unknown_key_warns_and_still_lists(tmp_path: Path) -> None:
    inv = tmp_path / "web.ini"
    inv.write_text("[h1]\nhostname = a\nusername = x\nhostnmae = b\n")
    result = hostbatch("hosts", "-i", str(inv), "--ssh-config", "")
    assert result.returncode == 0
    assert "warning: " in result.stderr and "web.ini:4: unknown key 'hostnmae'" in result.stderr
    assert "h1" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("-h", "web1"), "unknown host 'web1'; did you mean"),
        (("-g", "web_cluster"), "unknown group 'web_cluster'; did you mean 'web_clusters'"),
        (("@db_servers", "!@db_servers"), "the selection matches no host"),
    ],
)
def test_bad_selection_exit_2(args: tuple[str, ...], expected: str) -> None:
    result = hostbatch("hosts", "-i", str(DEMO_INVENTORY), *args)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_inventory_says_where_it_looked(tmp_path: Path) -> None:
    result = hostbatch("hosts", "-i", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert "nope: inventory not found" in result.stderr


def test_help_has_examples() -> None:
    result = hostbatch("hosts", "--help")
    assert result.returncode == 0
    assert "Examples:" in result.stdout and "-g web_clusters,db_servers" in result.stdout


def test_ask_pass_prompts_and_masks(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.ini"
    inv.write_text("[h1]\nhostname = 127.0.0.1\n")
    result = run_cli("hosts", "-i", str(inv), "--ask-pass", "--json", input="typed-secret-pw\n")
    assert result.returncode == 0, result.stderr
    assert "SSH password" in result.stderr
    assert "typed-secret-pw" not in result.stdout + result.stderr
    record = json.loads(result.stdout)[0]
    assert record["password"] == "********" and record["auth"] == "password"
