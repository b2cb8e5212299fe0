"""--color auto|always|never, --no-color, NO_COLOR and FORCE_COLOR in run, put and ping."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.output.color import color_enabled
from hostbatch.testing import Fleet, FleetThread
from tests.fixtures.cli import run_cli

ESC = "\x1b["


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, Path]]:
    with FleetThread(2) as started:
        yield started, started.write_inventory(tmp_path_factory.mktemp("c") / "inv", auth="key")


def hostbatch(fleet: tuple[Fleet, Path], command: str, *args: str, **env: str) -> str:
    started, inventory = fleet
    result = run_cli(
        command, "-i", str(inventory), "--known-hosts", str(started.known_hosts),
        "--ssh-config", "", *args, env={"NO_COLOR": "", "FORCE_COLOR": "", **env},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("args", "env", "coloured"),
    [
        ((), {}, False),  # a pipe: plain
        ((), {"FORCE_COLOR": "1"}, True),
        ((), {"FORCE_COLOR": "0"}, False),
        ((), {"FORCE_COLOR": "1", "NO_COLOR": "1"}, False),
        (("--color", "always"), {"NO_COLOR": "1"}, True),
        (("--color",), {}, True),  # the old flag still means always
        (("--no-color",), {"FORCE_COLOR": "1"}, False),
        (("--color=never",), {"FORCE_COLOR": "1"}, False),
    ],
)
def test_run_live_output_colour(
    fleet: tuple[Fleet, Path], args: tuple[str, ...], env: dict[str, str], coloured: bool
) -> None:
    out = hostbatch(fleet, "run", *args, "--", "echo", "hi", **env)
    assert "hi" in out
    assert (ESC in out) is coloured


def test_put_progress_and_ping_colour(fleet: tuple[Fleet, Path], tmp_path: Path) -> None:
    local = tmp_path / "f.txt"
    local.write_text("x\n")
    painted = hostbatch(fleet, "put", "--color", "always", str(local), "f.txt")
    assert "\x1b[32m✓\x1b[0m" in painted
    assert ESC not in hostbatch(fleet, "put", str(local), "f.txt")
    assert "\x1b[32mok" in hostbatch(fleet, "ping", FORCE_COLOR="1")
    assert ESC not in hostbatch(fleet, "ping", FORCE_COLOR="1", NO_COLOR="1")


def test_auto_colours_a_terminal_only() -> None:
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as terminal, open(os.devnull, "w") as devnull:
        assert color_enabled("auto", terminal, {}) is True
        assert color_enabled("auto", terminal, {"NO_COLOR": "1"}) is False
        assert color_enabled("auto", devnull, {}) is False
        assert color_enabled("auto", devnull, {"FORCE_COLOR": "true"}) is True
        assert color_enabled("never", terminal, {"FORCE_COLOR": "1"}) is False
    os.close(leader)
