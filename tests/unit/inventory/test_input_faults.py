"""Broken inventory input: every parser error is file:line, short, and free of secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostbatch.errors import InventoryError
from hostbatch.inventory import load_inventory
from hostbatch.inventory.yaml import MAX_DEPTH, _DepthLimitedLoader, compose
from tests.unit.inventory.conftest import WriteFile

SECRET = "Zq9-very-secret-value"


def load_error(path: Path) -> str:
    with pytest.raises(InventoryError) as caught:
        load_inventory([path], ssh_config=None)
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("hostname = 10.0.0.1\n", 1),  # no section header before the first key
        ("[web01\nhostname = 10.0.0.1\n", 1),  # a section without ']'
        ("# comment\n\nport=22\n[a]\n", 3),
        ("[a]\nhostname = 1\n[a]\n", 3),  # duplicate section
        ("[a]\nhostname = 1\nhostname = 2\n", 3),  # duplicate key
        ("[a]\nhostname = 1\njust words\n", 3),
    ],
)
def test_every_configparser_error_is_file_line_message(
    write: WriteFile, text: str, line: int
) -> None:
    path = write("hosts.ini", text)
    message = load_error(path)
    assert message.startswith(f"{path}:{line}: ")
    assert "\n" not in message


def test_long_offending_line_is_quoted_short(write: WriteFile) -> None:
    path = write("hosts.ini", "[a]\n" + "x" * 100_000 + "\n")
    message = load_error(path)
    assert message.startswith(f"{path}:2: ")
    assert len(message) < 300


def test_password_without_equals_is_masked_in_syntax_error(write: WriteFile) -> None:
    path = write("hosts.ini", f"[a]\nhostname = 10.0.0.1\npassword {SECRET}\n")
    message = load_error(path)
    assert message.startswith(f"{path}:3: ")
    assert SECRET not in message and "Zq9" not in message


@pytest.mark.parametrize("key", ["password", "passphrase", "secret", "enable_secret", "Password"])
def test_secret_values_masked_in_quoted_lines(write: WriteFile, key: str) -> None:
    path = write("hosts.ini", f"[a]\n{key}   {SECRET} and more\n")
    assert "very-secret" not in load_error(path)


def test_env_key_values_may_be_shown(write: WriteFile) -> None:
    path = write("hosts.ini", "[a]\npassword_env WEB_PW\n")
    assert "WEB_PW" in load_error(path)


@pytest.mark.parametrize("key", ["port", "username", "key_file", "transport", "device_type"])
def test_indented_line_continuing_a_single_line_key_is_an_error(write: WriteFile, key: str) -> None:
    path = write("hosts.ini", f"[a]\nhostname = 10.0.0.1\n{key} = x\n  password = {SECRET}\n")
    message = load_error(path)
    assert message.startswith(f"{path}:3: ")
    assert "one line" in message
    assert SECRET not in message


def test_indented_password_after_hostname_never_reaches_the_host(write: WriteFile) -> None:
    path = write("hosts.ini", f"[a]\nhostname = 10.0.0.1\n  password = {SECRET}\n")
    message = load_error(path)
    assert message.startswith(f"{path}:2: ") and "'hostname'" in message
    assert SECRET not in message


def test_indented_groups_list_may_continue(write: WriteFile) -> None:
    path = write("hosts.ini", "[a]\nhostname = 10.0.0.1\ngroups = web,\n  db\n")
    assert load_inventory([path], ssh_config=None).groups == {"web": ("a",), "db": ("a",)}


def test_multi_line_yaml_value_is_an_error(write: WriteFile) -> None:
    path = write("hosts.yaml", f'web:\n  - {{ip: "10.0.0.1\\npassword: {SECRET}"}}\n')
    message = load_error(path)
    assert message.startswith(f"{path}:2: ")
    assert SECRET not in message


@pytest.mark.parametrize("text", ["", "# only a comment\n; another\n", "\n\n"])
def test_empty_ini_loads_no_hosts(write: WriteFile, text: str) -> None:
    path = write("hosts.ini", text)
    assert len(load_inventory([path], ssh_config=None)) == 0


@pytest.mark.parametrize("text", ["", "# nothing\n", "---\n", "~\n"])
def test_empty_yaml_loads_no_hosts(write: WriteFile, text: str) -> None:
    path = write("hosts.yaml", text)
    assert len(load_inventory([path], ssh_config=None)) == 0


def test_deeply_nested_yaml_is_a_clear_error(write: WriteFile) -> None:
    path = write("hosts.yaml", "web:\n  - " + "[" * 5000 + "]" * 5000 + "\n")
    message = load_error(path)
    assert message.startswith(f"{path}:2: ")
    assert "nest" in message


def test_long_yaml_key_is_quoted_short(write: WriteFile) -> None:
    path = write("hosts.yaml", "web:\n  " + "k" * 100_000 + ": 1\n")
    assert len(load_error(path)) < 300


@pytest.mark.parametrize("text", ["a: " + "[" * 3000 + "]" * 3000, "a:\n" + "  - " * 3000 + "x"])
def test_pure_python_yaml_loader_limits_depth(tmp_path: Path, text: str) -> None:
    path = tmp_path / "deep.yaml"
    with pytest.raises(InventoryError, match=rf"{path}:[12]: .*nested deeper than {MAX_DEPTH}"):
        compose(text, path, loader=_DepthLimitedLoader)


def test_line_numbers_count_only_newlines_like_configparser(write: WriteFile) -> None:
    path = write("hosts.ini", "[a]\n# a form\x0cfeed and a\x85next line\nhostname = 1\nport = x\n")
    assert load_error(path).startswith(f"{path}:4: ")
