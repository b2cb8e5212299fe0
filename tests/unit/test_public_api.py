"""The public API is what ``hostbatch.__all__`` says, and it is complete."""

from __future__ import annotations

import inspect
import subprocess
import sys

import hostbatch
from hostbatch import errors, models


def test_every_exported_name_exists_and_the_list_is_sorted() -> None:
    for name in hostbatch.__all__:
        assert hasattr(hostbatch, name), name
    assert list(hostbatch.__all__) == sorted(hostbatch.__all__)


def test_every_error_and_record_is_exported() -> None:
    for module in (errors, models):
        for name, value in vars(module).items():
            public = not name.startswith("_")
            if public and inspect.isclass(value) and value.__module__ == module.__name__:
                assert name in hostbatch.__all__, f"{module.__name__}.{name} not exported"


def test_every_error_derives_from_the_root() -> None:
    for value in vars(errors).values():
        if inspect.isclass(value) and issubclass(value, Exception):
            assert issubclass(value, errors.HostbatchError), value


def test_import_does_not_load_ssh_libraries() -> None:
    libraries = "{'asyncssh', 'paramiko', 'netmiko'}"
    code = f"import sys, hostbatch; print(sorted({libraries} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_secrets_never_show() -> None:
    secret = models.Secret("hunter2")
    creds = models.Credentials("u", password=secret, passphrase=secret, secret=secret)
    host = models.Host("h", "127.0.0.1", credentials=creds)
    for text in (str(secret), repr(secret), f"{secret}", repr(creds), repr(host), str(host)):
        assert "hunter2" not in text
    assert secret.reveal() == "hunter2"
