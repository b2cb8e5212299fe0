"""INI inventories: the seed's folder form and the single-file form, and their bad input."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostbatch.errors import InventoryError
from hostbatch.inventory import ini, load_inventory
from hostbatch.models import Secret
from tests.unit.inventory.conftest import WriteFile

SEED_WEB = """
    [DEFAULT]
    username = deploy
    password = s3cret-web
    [h1]
    hostname = 10.1.0.1
    port = 22
    [h2]
    hostname = 10.1.0.2
    port = 2222
    username = admin
"""
SEED_DB = """
    [db1]
    hostname = 10.2.0.1
    port = 22
    username = dba
    password = s3cret-db
    [h2]
    hostname = 10.1.0.2
"""


def seed_folder(write: WriteFile) -> Path:
    write("inventory/web_clusters.ini", SEED_WEB)
    write("inventory/db_servers.ini", SEED_DB)
    return write("inventory/h1.ini", "[h1]\nhostname = 10.1.0.1\n").parent


def test_seed_folder_form_selects_hosts_and_groups_once(write: WriteFile) -> None:
    folder = seed_folder(write)
    inventory = load_inventory([folder], ssh_config=None)
    selected = inventory.select(hosts="h1", groups="web_clusters,db_servers")
    assert [h.name for h in selected] == ["h1", "h2", "db1"]
    h2 = inventory.hosts["h2"]
    assert set(h2.groups) == {"web_clusters", "db_servers"}
    assert (h2.port, h2.username) == (2222, "admin")
    assert h2.credentials.password == Secret("s3cret-web")
    assert inventory.hosts["db1"].credentials.password == Secret("s3cret-db")
    assert inventory.hosts["h1"].source is not None
    assert set(inventory.groups["web_clusters"]) == {"h1", "h2"}


def test_default_section_applies_only_to_its_file(write: WriteFile) -> None:
    folder = seed_folder(write)
    inventory = load_inventory([folder], ssh_config=None)
    assert inventory.hosts["h1"].username == "deploy"
    assert inventory.hosts["db1"].username == "dba"


def test_all_known_keys_and_aliases(write: WriteFile) -> None:
    path = write(
        "hosts.ini",
        """
        [r1]
        ip = 10.0.0.1
        user = admin
        secret = en4ble
        device_type = cisco_ios
        key_file = ~/.ssh/id_r1
        passphrase = pp
        """,
    )
    host = load_inventory([path], ssh_config=None).hosts["r1"]
    assert host.hostname == "10.0.0.1"
    assert host.transport == "netmiko"
    assert host.credentials.secret == Secret("en4ble")
    assert host.credentials.key_file is not None
    assert host.credentials.key_file.endswith("/.ssh/id_r1")
    assert not host.credentials.key_file.startswith("~")


def test_single_file_form_precedence(write: WriteFile) -> None:
    path = write(
        "hosts.ini",
        """
        [DEFAULT]
        username = ops
        port = 22
        [group:web]
        port = 2222
        username = www
        [group:eu]
        port = 3333
        [web01]
        hostname = 10.0.0.1
        groups = web, eu
        [web02]
        hostname = 10.0.0.2
        groups = eu, web
        port = 4444
        [solo]
        hostname = 10.0.0.3
        """,
    )
    inventory = load_inventory([path], ssh_config=None)
    web01, web02, solo = (inventory.hosts[n] for n in ("web01", "web02", "solo"))
    assert (web01.port, web01.username) == (2222, "www")  # first listed group wins
    assert (web02.port, web02.username) == (4444, "www")  # host over group
    assert (solo.port, solo.username, solo.groups) == (22, "ops", ())  # defaults
    assert inventory.groups["eu"] == ("web01", "web02")


def test_syntax_error_names_file_and_line(write: WriteFile) -> None:
    path = write("inventory/web.ini", "[h1]\nhostname = 10.0.0.1\nthis line is broken\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory([path.parent], ssh_config=None)
    assert caught.value.path == str(path)
    assert caught.value.line == 3
    assert str(caught.value).startswith(f"{path}:3: syntax error")


def test_duplicate_section_in_one_file_names_line(write: WriteFile) -> None:
    path = write("web.ini", "[h1]\nhostname = a\n[h1]\nhostname = b\n")
    with pytest.raises(InventoryError, match=r"web.ini:3: syntax error.*h1"):
        load_inventory([path], ssh_config=None)


def test_missing_hostname(write: WriteFile) -> None:
    path = write("inventory/web.ini", "[h1]\nport = 22\n\n[h2]\nusername = x\n")
    with pytest.raises(InventoryError, match=r"web.ini:1: host 'h1' has no hostname"):
        load_inventory([path.parent], ssh_config=None)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ssh", r"port 'ssh' is not a number"),
        ("70000", r"port 70000 is out of range"),
        ("0", r"port 0 is out of range"),
    ],
)
def test_bad_port_names_file_and_line(write: WriteFile, value: str, message: str) -> None:
    path = write("inventory/web.ini", f"[h1]\nhostname = a\n\n[h2]\nhostname = b\nport = {value}\n")
    with pytest.raises(InventoryError, match=rf"web.ini:6: host 'h2': {message}"):
        load_inventory([path.parent], ssh_config=None)


def test_conflicting_definitions_across_group_files(write: WriteFile) -> None:
    write("inventory/web.ini", "[h1]\nhostname = 10.0.0.1\npassword = one\n")
    write("inventory/db.ini", "[h1]\nhostname = 10.0.0.9\npassword = two\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory([write("inventory/x.ini", "").parent], ssh_config=None)
    text = str(caught.value)
    assert "host 'h1' is defined twice with conflicting values for 'hostname'" in text
    assert "db.ini:2" in text and "web.ini:2" in text


def test_conflicting_passwords_are_not_printed(write: WriteFile) -> None:
    write("inventory/web.ini", "[h1]\nhostname = a\npassword = pw-one\n")
    write("inventory/db.ini", "[h1]\nhostname = a\npassword = pw-two\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory([write("inventory/x.ini", "").parent], ssh_config=None)
    assert "'password'" in str(caught.value)
    assert "pw-one" not in str(caught.value) and "pw-two" not in str(caught.value)


def test_unknown_key_is_a_warning_naming_it(write: WriteFile) -> None:
    path = write("web.ini", "[h1]\nhostname = a\nprot = 22\n")
    inventory = load_inventory([path], ssh_config=None)
    assert inventory.warnings == (f"{path}:3: unknown key 'prot' ignored",)
    assert inventory.hosts["h1"].port == 22


def test_password_env(write: WriteFile) -> None:
    path = write("web.ini", "[h1]\nhostname = a\npassword_env = WEB_PW\n")
    inventory = load_inventory([path], ssh_config=None, environ={"WEB_PW": "from-env"})
    assert inventory.hosts["h1"].credentials.password == Secret("from-env")
    with pytest.raises(InventoryError, match=r"web.ini:3: .*password_env names \$WEB_PW"):
        load_inventory([path], ssh_config=None, environ={})


def test_world_readable_password_file_warns(write: WriteFile) -> None:
    path = write("web.ini", "[h1]\nhostname = a\npassword = pw\n")
    path.chmod(0o644)
    warnings = load_inventory([path], ssh_config=None).warnings
    assert any("readable by group or others" in w and "chmod 600" in w for w in warnings)
    path.chmod(0o600)
    assert load_inventory([path], ssh_config=None).warnings == ()


def test_unknown_transport(write: WriteFile) -> None:
    path = write("web.ini", "[h1]\nhostname = a\ntransport = telnet\n")
    with pytest.raises(InventoryError, match=r"web.ini:3: .*unknown transport 'telnet'"):
        load_inventory([path], ssh_config=None)


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="holds no"):
        load_inventory([tmp_path], ssh_config=None)


INI_LINES = [
    "[a]", "[b]", "[DEFAULT]", "[a] trailing", "[x]y]", "  [b]", "[open",
    "key = v", "Key: w", "other=", "k = a = b", "=v", ": v", "x", "  cont", "\tcont2",
    "", "   ", "# c", "; c", "  # indented comment", " key = z", "hostname=10.0.0.1",
]  # fmt: skip


def _configparser_view(text: str) -> dict[str, dict[str, str]] | None:
    parser = configparser.ConfigParser(interpolation=None, default_section="\x00none", strict=True)
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    return {name: dict(parser.items(name, raw=True)) for name in parser.sections()}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(INI_LINES), max_size=12))
def test_ini_reader_matches_configparser(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    expected = _configparser_view(text)
    reader = ini._Reader(Path("t.ini"), text)
    if expected is None:
        with pytest.raises(InventoryError, match=r"^t\.ini:\d+: syntax error: "):
            reader.read()
        return
    got = {name: {k: v for k, v, _ in s.items} for name, s in reader.read().items()}
    assert got == expected


def test_ini_reader_knows_every_key_line(write: WriteFile) -> None:
    path = write("hosts.ini", "# top\n[a]\n\nhostname = 1\n  more\nport: 22\n[b]\nuser=x\n")
    sections = ini._read(path)
    assert sections["a"].line == 2 and sections["b"].line == 7
    assert [(k, line) for k, _, line in sections["a"].items] == [("hostname", 4), ("port", 6)]
    assert sections["a"].items[0][1] == "1\nmore"
