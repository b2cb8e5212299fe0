"""One ``collector_paused()`` (hostbatch.gcpause) for the inventory loader and the transport
registry: the collector is off inside, back on after (even after an error), and a caller
that paused it keeps it paused. The registry's use is checked on a real import of an SSH
library in a fresh interpreter (no collection runs during it)."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest

from hostbatch import gcpause
from hostbatch.inventory import inventory, load_inventory
from hostbatch.transport import registry


def test_paused_inside_and_restored_after_an_error() -> None:
    assert gc.isenabled()
    with pytest.raises(ValueError, match="boom"), gcpause.collector_paused():
        assert not gc.isenabled()
        raise ValueError("boom")
    assert gc.isenabled()


def test_a_caller_that_paused_the_collector_keeps_it_paused(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text("[h1]\nhostname = 127.0.0.1\n")
    gc.disable()
    try:
        with gcpause.collector_paused():
            pass
        assert len(load_inventory([path], ssh_config=None, environ={})) == 1
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_both_users_share_the_one_helper() -> None:
    assert vars(inventory)["collector_paused"] is gcpause.collector_paused
    assert vars(registry)["collector_paused"] is gcpause.collector_paused
    assert not hasattr(inventory, "_collector_paused")
    assert not hasattr(registry, "_collector_paused")


IMPORT_COUNTING = """
import gc, sys
seen = []
gc.callbacks.append(lambda phase, info: seen.append(info) if phase == "start" else None)
from hostbatch.transport.registry import get_transport
gc.collect(); seen.clear()
get_transport("asyncssh")
assert "asyncssh" in sys.modules and gc.isenabled()
print(len(seen))
"""


def test_importing_a_transport_runs_no_collection() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_COUNTING],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # without the pause ~46 collections run during the import; one young-generation
    # collection may run as the collector comes back on
    assert int(done.stdout) <= 1, done.stderr
