"""The agent's pool keys: which hosts may share a warm connection."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hostbatch.engine.executors.agent import Fingerprint
from hostbatch.engine.plan import Plan
from hostbatch.models import Command, Credentials, Host, Secret
from hostbatch.transport.base import ConnectOptions

PASSWORD = "s3cret-value-xyz"


def key(fingerprint: Fingerprint, host: Host, known_hosts: Path, **options: object) -> str:
    connect = ConnectOptions(known_hosts=str(known_hosts), **options)  # type: ignore[arg-type]
    plan = Plan(Command("true"), (host,), options=connect)
    return fingerprint.of(plan, host, {})


def test_a_key_changes_with_every_part_of_the_identity(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA\n")
    host = Host("h1", "127.0.0.1", 2222, Credentials("u", password=Secret(PASSWORD)))
    fingerprint = Fingerprint()
    base = key(fingerprint, host, known)
    assert key(fingerprint, host, known) == base
    assert PASSWORD not in base
    variants = [
        replace(host, name="h2"),
        replace(host, hostname="127.0.0.2"),
        replace(host, port=2223),
        replace(host, credentials=Credentials("v", password=Secret(PASSWORD))),
        replace(host, credentials=Credentials("u", password=Secret(PASSWORD + "x"))),
        replace(host, credentials=Credentials("u", key_file="/k", password=Secret(PASSWORD))),
        replace(host, transport="paramiko"),
    ]
    keys = {key(fingerprint, variant, known) for variant in variants}
    assert base not in keys and len(keys) == len(variants)
    assert key(fingerprint, host, known, host_keys="accept-new") != base
    assert key(fingerprint, host, tmp_path / "other_known_hosts") != base
    # secrets are HMACs under each agent's own random key: another agent, another key
    assert key(Fingerprint(), host, known) != base
    known.write_text("[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\n")
    assert key(fingerprint, host, known) != base  # the trusted key changed
