"""What hostbatch negotiates with a real OpenSSH sshd (issue #16), read from sshd's own log
at LogLevel DEBUG, so the algorithm preferences cannot silently regress: curve25519 kex,
AES-GCM (asyncssh), the host key type cheapest for the server among the known ones, and a
server offering only other safe algorithms still logs in."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from hostbatch.api import RunOptions, run
from hostbatch.engine.limits import Limits
from hostbatch.models import Credentials, Host, Status
from hostbatch.testing.plugin import SshdFactory
from hostbatch.testing.sshd import OpenSSHServer
from hostbatch.transport.base import ConnectOptions

TRANSPORTS = ["asyncssh", "paramiko"]
KEYGEN = {"rsa": ["-t", "rsa", "-b", "3072"], "ecdsa": ["-t", "ecdsa", "-b", "256"]}
_KEX_LINE = {
    "kex": re.compile(r"kex: algorithm: (\S+)"),
    "host key": re.compile(r"kex: host key algorithm: (\S+)"),
    "cipher": re.compile(r"kex: client->server cipher: (\S+)"),
}


def host_keys(tmp_path: Path, kinds: list[str]) -> tuple[list[str], dict[str, str]]:
    """HostKey config lines for new keys of *kinds*, and each one's ``type base64``."""
    config, public = [], {}
    for kind in kinds:
        path = tmp_path / f"ssh_host_{kind}_key"
        subprocess.run(["ssh-keygen", "-q", *KEYGEN[kind], "-N", "", "-f", str(path)], check=True)
        config.append(f"HostKey {path}")
        public[kind] = " ".join(Path(f"{path}.pub").read_text().split()[:2])
    return config, public


def known_hosts(tmp_path: Path, server: OpenSSHServer, keys: list[str]) -> Path:
    """A known_hosts naming the server with *keys* (``type base64``), in that order."""
    path = tmp_path / "known_hosts"
    path.write_text("".join(f"[{server.host}]:{server.port} {key}\n" for key in keys))
    return path


def negotiated(server: OpenSSHServer) -> dict[str, str]:
    """The last login's kex, host key algorithm and cipher, from sshd's DEBUG log."""
    deadline = time.monotonic() + 10
    while True:
        found = {name: pattern.findall(server.log_text()) for name, pattern in _KEX_LINE.items()}
        if all(found.values()) or time.monotonic() > deadline:
            return {name: values[-1] if values else "" for name, values in found.items()}
        time.sleep(0.05)


def login(server: OpenSSHServer, known: Path, transport: str) -> None:
    host = Host(
        "algs",
        server.host,
        server.port,
        Credentials(username=server.username, key_file=str(server.client_key)),
    )
    connect = ConnectOptions(connect_timeout=10, known_hosts=str(known))
    options = RunOptions(Limits(), connect, transport)
    result = run("true", hosts=[host], options=options)["algs"]
    assert result.status is Status.OK, result.error
    assert result.exit_status == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_defaults_negotiate_curve25519_and_the_cheapest_known_host_key(
    openssh_server_factory: SshdFactory, tmp_path: Path, transport: str
) -> None:
    config, public = host_keys(tmp_path, ["rsa", "ecdsa"])
    server = openssh_server_factory(log_level="DEBUG", extra_config=config)
    ed25519 = " ".join(server.host_key_line.split()[:2])
    # the file's order (RSA first) must not decide: ed25519 is the cheapest to sign with
    known = known_hosts(tmp_path, server, [public["rsa"], public["ecdsa"], ed25519])
    login(server, known, transport)
    got = negotiated(server)
    assert got["host key"] == "ssh-ed25519"
    # paramiko knows curve25519 only under its libssh.org name (same algorithm)
    expected_kex = {"asyncssh": "curve25519-sha256", "paramiko": "curve25519-sha256@libssh.org"}
    assert got["kex"] == expected_kex[transport]
    if transport == "asyncssh":
        assert got["cipher"] == "aes128-gcm@openssh.com"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ecdsa_before_rsa_when_ed25519_is_not_known(
    openssh_server_factory: SshdFactory, tmp_path: Path, transport: str
) -> None:
    config, public = host_keys(tmp_path, ["rsa", "ecdsa"])
    server = openssh_server_factory(log_level="DEBUG", extra_config=config)
    login(server, known_hosts(tmp_path, server, [public["rsa"], public["ecdsa"]]), transport)
    assert negotiated(server)["host key"] == "ecdsa-sha2-nistp256"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_server_offering_only_other_safe_algorithms_still_works(
    openssh_server_factory: SshdFactory, tmp_path: Path, transport: str
) -> None:
    config, public = host_keys(tmp_path, ["rsa"])
    cipher = {"asyncssh": "chacha20-poly1305@openssh.com", "paramiko": "aes256-gcm@openssh.com"}
    config += [
        "KexAlgorithms curve25519-sha256@libssh.org",
        f"Ciphers {cipher[transport]}",
        "HostKeyAlgorithms rsa-sha2-512,rsa-sha2-256",
    ]
    server = openssh_server_factory(log_level="DEBUG", extra_config=config)
    ed25519 = " ".join(server.host_key_line.split()[:2])
    login(server, known_hosts(tmp_path, server, [ed25519, public["rsa"]]), transport)
    got = negotiated(server)
    assert got == {
        "kex": "curve25519-sha256@libssh.org",
        "host key": "rsa-sha2-512",
        "cipher": cipher[transport],
    }
