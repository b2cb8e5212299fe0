"""Broken inventories and empty selections from the command line: exit 2, one line, no secret.

Most cases drive the click app in-process (CliRunner); a handful run the real entry point
in a subprocess, as a user would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostbatch.cli.app import cli

SECRET = "Zq9-hunter2-not-for-eyes"
VALID_INI = (
    "[DEFAULT]\nusername = ops\n[web01]\nhostname = 127.0.0.1\nport = 22\n"
    "[web02]\nhostname = 127.0.0.2\n"
)
VALID_YAML = "web:\n  - {name: web01, ip: 127.0.0.1}\n  - {name: web02, ip: 127.0.0.2}\n"
FAST = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--ssh-config", ""], catch_exceptions=True)


def assert_one_line_error(result: Result, path: Path | None = None) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("hostbatch: error: ")
    assert "Traceback" not in result.stderr
    if path is not None:
        assert result.stderr.startswith(f"hostbatch: error: {path}:")
    assert len(result.stderr) < 600


# One line that is broken wherever it is put in an INI file (never a continuation line).
_junk = st.text(
    alphabet=st.characters(blacklist_characters="=:[]#;\n\r", blacklist_categories=["Cs"]),
    min_size=1,
    max_size=40,
).map(lambda text: "x" + text.strip())
BROKEN_INI_LINES = st.one_of(
    _junk,
    _junk.map(lambda text: "[" + text),  # a section header without ']'
    st.just(f"password {SECRET}"),
    st.just("x" * 5000),
    st.sampled_from(["[web01]", "[DEFAULT]"]),  # a duplicate section
)


@FAST
@given(line=BROKEN_INI_LINES, position=st.integers(min_value=0, max_value=7))
def test_generated_broken_ini_is_one_line_exit_2(line: str, position: int) -> None:
    lines = VALID_INI.splitlines()
    lines.insert(min(position, len(lines)), line)
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), "hosts.ini", "\n".join(lines) + "\n")
        result = invoke("hosts", "-i", str(path))
    assert_one_line_error(result, path)
    assert SECRET not in result.output + result.stderr


BROKEN_YAML_TAILS = st.one_of(
    _junk.map(lambda text: "  - {name: [" + text),  # an unclosed flow collection
    _junk.map(lambda text: "\t" + text + ": 1"),  # a tab as indentation
    st.just("  - " + "[" * 2000 + "]" * 2000),  # deeper than the YAML limit
    st.just(f'  - {{name: x, ip: 127.0.0.3, port: "22\\npassword: {SECRET}"}}'),  # two lines
    st.just(f"  - {{name: x, ip: 127.0.0.3, port: '22\\npassword: {SECRET}'}}"),  # one line
    st.just("db: 5"),  # a group that is not a list of hosts
    st.just("  - {name: web03}"),  # a host without an address
)


@FAST
@given(tail=BROKEN_YAML_TAILS)
def test_generated_broken_yaml_is_one_line_exit_2(tail: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), "hosts.yaml", VALID_YAML + tail + "\n")
        result = invoke("hosts", "-i", str(path))
    assert_one_line_error(result, path)
    assert SECRET not in result.output + result.stderr


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("nohead.ini", "hostname = 127.0.0.1\n"),
        ("open.ini", "[web01\nhostname = 127.0.0.1\n"),
        ("secret.ini", f"[web01]\nhostname = 127.0.0.1\npassword {SECRET}\n"),
        ("long.ini", "[web01]\n" + "y" * 1_000_000 + "\n"),
        ("deep.yaml", "web:\n  - " + "[" * 100_000 + "\n"),
    ],
)
def test_real_process_broken_inventory(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path, name, text)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from hostbatch.cli.app import main; main()",
            "hosts",
            "-i",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"hostbatch: error: {path}:")
    assert "Traceback" not in done.stderr and len(done.stderr) < 600
    assert SECRET not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "selection",
    [["-h", ""], ["-g", ""], ["-h", ","], ["-h", "web01,"], ["-h", "web01", "-h", ""], ["-g", " "]],
)
@pytest.mark.parametrize("command", ["hosts", "run"])
def test_empty_selection_is_an_error_not_every_host(
    tmp_path: Path, command: str, selection: list[str]
) -> None:
    path = write(tmp_path, "hosts.ini", VALID_INI)
    tail = ["--", "true"] if command == "run" else []
    result = invoke(command, "-i", str(path), *selection, *tail)
    assert_one_line_error(result)
    assert "empty" in result.stderr
    assert "web01" not in result.stdout  # nothing listed, nothing run


def test_empty_pattern_argument_is_an_error(tmp_path: Path) -> None:
    result = invoke("hosts", "-i", str(write(tmp_path, "hosts.ini", VALID_INI)), "")
    assert_one_line_error(result)
    assert result.stdout == ""


def test_huge_range_selection_names_limit_and_count(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.ini", VALID_INI)
    result = invoke("run", "-i", str(path), "-h", ",".join(["web[0-999998]"] * 12), "--", "true")
    assert_one_line_error(result)
    assert "11999988" in result.stderr and "1000000" in result.stderr


@pytest.mark.parametrize(
    ("name", "text"), [("e.ini", ""), ("c.ini", "# nothing\n; here\n"), ("e.yaml", "---\n")]
)
def test_empty_inventory_says_so(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path, name, text)
    listed = invoke("hosts", "-i", str(path))
    assert listed.exit_code == 0, listed.stderr
    assert f"no hosts in {path}" in listed.stderr and "0 host(s)" in listed.stderr
    assert json.loads(invoke("hosts", "-i", str(path), "--json").output) == []
    ran = invoke("run", "-i", str(path), "--", "true")
    assert_one_line_error(ran)


def test_indented_password_never_reaches_output(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.ini", f"[web01]\nhostname = 127.0.0.1\n  password = {SECRET}\n")
    for args in (["hosts"], ["hosts", "--json"], ["run", "--", "true"]):
        result = invoke(args[0], "-i", str(path), *args[1:])
        assert_one_line_error(result, path)
        assert SECRET not in result.output + result.stderr
        assert ":2: 'hostname'" in result.stderr
