"""The algorithm preference lists hostbatch hands asyncssh and paramiko (issue #16): the
cheapest safe ones first, and every library default still after them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import asyncssh
import paramiko

from hostbatch.models import Credentials, Host
from hostbatch.transport import asyncssh_, hostkeys, paramiko_
from hostbatch.transport.base import ConnectOptions


def test_kex_preference_puts_mlkem_and_curve25519_first_and_keeps_every_default() -> None:
    defaults = [name.decode() for name in asyncssh.kex.get_default_kex_algs()]
    preference = asyncssh_._kex_preference()
    assert sorted(preference) == sorted(defaults)  # nothing dropped, nothing added
    leading = [alg for alg in asyncssh_.PREFERRED_KEX if alg in defaults]
    assert "curve25519-sha256" in leading
    assert preference[: len(leading)] == leading
    rest = preference[len(leading) :]
    assert "ecdh-sha2-nistp256" in rest
    assert all(not alg.startswith(("mlkem", "curve25519")) for alg in rest)


def test_known_host_key_types_are_ordered_cheapest_for_the_server_first() -> None:
    known = ("rsa-sha2-256", "rsa-sha2-512", "ssh-rsa", "ecdsa-sha2-nistp256", "ssh-ed25519")
    order = asyncssh_._known_first(known)
    assert order[:5] == (
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "rsa-sha2-512",
        "rsa-sha2-256",
        "ssh-rsa",
    )
    defaults = asyncssh.public_key.get_default_public_key_algs()
    assert {alg.decode() for alg in defaults} <= set(order)  # any server still negotiates
    assert len(order) == len(set(order))


def test_known_first_leaves_asyncssh_defaults_alone() -> None:
    certificates = list(asyncssh.public_key.get_default_certificate_algs())
    asyncssh_._known_first.cache_clear()
    for known in [("ssh-ed25519",), ("rsa-sha2-256",), ("ecdsa-sha2-nistp256",)]:
        asyncssh_._known_first(known)
    assert asyncssh.public_key.get_default_certificate_algs() == certificates


def test_unranked_types_keep_their_order_after_ranked_ones() -> None:
    names = ["ssh-ed448", "ssh-rsa", "sk-ssh-ed25519@openssh.com", "ssh-ed25519"]
    ranked = sorted(names, key=hostkeys.server_cost_rank)
    assert ranked == ["ssh-ed25519", "ssh-rsa", "ssh-ed448", "sk-ssh-ed25519@openssh.com"]


def _public(tmp_path: Path, kind: str) -> str:
    path = tmp_path / f"key_{kind}"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    return " ".join(Path(f"{path}.pub").read_text().split()[:2])


def test_paramiko_holds_the_cheapest_known_key_type_first(tmp_path: Path) -> None:
    """paramiko asks the server for the type of the first key it holds for the host."""
    known = tmp_path / "known_hosts"
    lines = [_public(tmp_path, kind) for kind in ("rsa", "ecdsa", "ed25519")]
    known.write_text("".join(f"[127.0.0.1]:2222 {line}\n" for line in lines))
    host = Host("h", "127.0.0.1", 2222, Credentials(username="u"))
    client = paramiko.SSHClient()
    paramiko_.trust_known_keys(client, host, ConnectOptions(known_hosts=str(known)))
    held = client.get_host_keys()["[127.0.0.1]:2222"]
    assert held.keys() == ["ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"]
