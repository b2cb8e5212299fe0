"""Shared fixtures: the in-process asyncssh fleet and a real OpenSSH sshd on loopback."""

pytest_plugins = ["tests.fixtures.fleet", "tests.fixtures.sshd"]
