"""known_hosts lookups: literal [host]:port entries, wildcards, hashed names, negation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from pathlib import Path

import paramiko
import pytest

from hostbatch.models import Host
from hostbatch.transport.base import ConnectOptions
from hostbatch.transport.hostkeys import (
    host_token,
    is_known,
    key_lines,
    malformed,
    record,
    usable_text,
)
from hostbatch.transport.paramiko_ import trust_known_keys

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBnotarealkeybutshapedlikeoneAAAAAAAAAAAAA"


def test_non_default_port_entry_is_literal_not_a_character_class(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(f"[127.0.0.1]:2222 {KEY}\n")
    assert is_known(path, "127.0.0.1", 2222)
    assert not is_known(path, "127.0.0.1", 2223)
    assert not is_known(path, "1", 2222)  # '[127.0.0.1]' must not match as a class


def test_wildcards_negation_and_port_22(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(f"# comment\nweb*,!web7 {KEY}\n10.0.0.? {KEY}\n")
    assert is_known(path, "web1", 22) and not is_known(path, "web7", 22)
    assert is_known(path, "10.0.0.5", 22) and not is_known(path, "10.0.0.55", 22)
    assert host_token("h", 22) == "h" and host_token("h", 2022) == "[h]:2022"


def test_hashed_entries(tmp_path: Path) -> None:
    salt = b"0123456789abcdef0123"
    digest = hmac.new(salt, b"[db1]:2200", hashlib.sha1).digest()
    name = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
    path = tmp_path / "known_hosts"
    path.write_text(f"{name} {KEY}\n")
    assert is_known(path, "db1", 2200) and not is_known(path, "db1", 22)


def test_record_appends_and_creates(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "known_hosts"
    record(path, "127.0.0.1", 2022, KEY)
    record(path, "127.0.0.2", 22, KEY)
    assert path.read_text().splitlines() == [f"[127.0.0.1]:2022 {KEY}", f"127.0.0.2 {KEY}"]
    assert path.stat().st_mode & 0o777 == 0o600
    assert is_known(path, "127.0.0.1", 2022)


def test_key_lines_picks_only_this_hosts_lines(tmp_path: Path) -> None:
    salt = b"0123456789abcdef0123"
    digest = hmac.new(salt, b"[db1]:2200", hashlib.sha1).digest()
    hashed = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
    path = tmp_path / "known_hosts"
    lines = [
        f"[db1]:2200,db1 {KEY}",  # several names on one line
        f"{hashed} {KEY}",
        f"db* {KEY}",
        f"db*,!db1 {KEY}",
        f"@cert-authority db1 {KEY}",  # a marker line is not a key of the host
        f"[db2]:2200 {KEY}",
    ]
    path.write_text("# comment\n" + "\n".join(lines) + "\n")
    assert key_lines(path, "db1", 2200) == [lines[0], lines[1]]
    assert key_lines(path, "db1", 22) == [lines[0], lines[2]]
    assert key_lines(path, "db2", 2200) == [lines[5]]
    assert key_lines(path, "db2", 22) == [lines[2], lines[3]]
    assert key_lines(tmp_path / "missing", "db1", 22) == []
    # is_known counts CA markers too (a host key that does not match is then "changed")
    path.write_text(f"@cert-authority ca-host {KEY}\n@revoked gone {KEY}\nshort\n")
    assert is_known(path, "ca-host", 22)
    assert not is_known(path, "gone", 22) and not is_known(path, "short", 22)


def test_key_lines_sees_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(f"a {KEY}\n")
    assert key_lines(path, "a", 22) == [f"a {KEY}"]
    record(path, "b", 22, KEY)
    assert key_lines(path, "b", 22) == [f"b {KEY}"]


def test_paramiko_clients_trust_only_the_hosts_own_lines(tmp_path: Path) -> None:
    ed25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    path = tmp_path / "known_hosts"
    path.write_text(f"[r1]:2222 {ed25519}\nr2 ssh-ed25519 not-base64!\nr2 {ed25519}\n")
    options = ConnectOptions(known_hosts=str(path))
    client = paramiko.SSHClient()
    trust_known_keys(client, Host("r1", "r1", 2222), options)
    assert list(client.get_host_keys()) == ["[r1]:2222"]
    client = paramiko.SSHClient()
    trust_known_keys(client, Host("r2", "r2"), options)  # the broken line is skipped
    assert list(client.get_host_keys()) == ["r2"]


def test_malformed_lines_are_skipped_and_reported_once_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "known_hosts"
    lines = [
        f"good {KEY}",
        "single-field",
        f"@bogus-marker good {KEY}",
        "@revoked only-two",
        f"|1|not!base64|x {KEY}",
        "good ssh-ed25519 not-base64!",
        f"good,other {KEY} comment",
    ]
    path.write_text("# comment\n" + "\n".join(lines) + "\n")
    assert [malformed(line) is None for line in lines] == [1, 0, 0, 0, 0, 1, 1]
    with caplog.at_level(logging.WARNING, logger="hostbatch"):
        for _ in range(2):
            assert key_lines(path, "good", 22) == [lines[0], lines[5], lines[6]]
            assert is_known(path, "other", 22) and not is_known(path, "single-field", 22)
    warned = [r for r in caplog.records if r.name == "hostbatch"]
    # (fields, not the text: the log filter masks any registered secret, even "p")
    assert [
        (getattr(r, "known_hosts", None), getattr(r, "known_hosts_line", None)) for r in warned
    ] == [(str(path), n) for n in (3, 4, 5, 6)]
    assert usable_text(path).splitlines()[1:] == [lines[0], "", "", "", "", *lines[5:]]
