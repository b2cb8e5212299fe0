"""The pytest plugin (hostbatch.testing.plugin) as a user's suite gets it: through the
``pytest11`` entry point, in a pytest of its own started in a subprocess."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hostbatch.testing import Fleet

USER_TESTS = """
import subprocess
import hostbatch


def test_fleet_runs_a_command(ssh_fleet, tmp_path):
    inventory = ssh_fleet.write_inventory(tmp_path / "inventory", auth="key")
    options = hostbatch.RunOptions(
        connect=hostbatch.ConnectOptions(known_hosts=str(ssh_fleet.known_hosts)))
    results = hostbatch.run("echo hi from $HOSTBATCH_FLEET_HOST", hosts="node0[1-3]",
                            inventory=inventory, options=options)
    assert {name: r.stdout_text for name, r in results.items()} == {
        f"node0{i}": f"hi from node0{i}\\n" for i in (1, 2, 3)}


def test_factory_sizes_and_behaviours(ssh_fleet_factory):
    fleet = ssh_fleet_factory(2, behaviours={"node02": "refuse_auth"})
    behaviours = [(h.name, h.behaviour) for h in fleet.hosts]
    assert behaviours == [("node01", "ok"), ("node02", "refuse_auth")]


def test_real_sshd(openssh_server):
    command = openssh_server.ssh_command("echo", "real")
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.stdout == "real\\n", done.stderr


def test_sshd_marker(request, openssh_server):
    assert request.node.get_closest_marker("sshd") is not None
"""

# a user's settings: warnings are errors (pytest-asyncio wants its loop scope set)
USER_INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n"


def test_a_users_suite_gets_the_fixtures_from_the_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makeini(USER_INI)
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=4)


def test_readme_example_passes(pytester: pytest.Pytester) -> None:
    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    section = readme.split("## Testing your own automation", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "no python example in the README's testing section"
    pytester.makeini(USER_INI)
    pytester.makepyfile(test_readme=match.group(1))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_sshd_marker_selects_openssh_tests(pytester: pytest.Pytester) -> None:
    pytester.makeini(USER_INI)
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-m", "not sshd")
    result.assert_outcomes(passed=2, deselected=2)


def test_plugin_off_means_no_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeini(USER_INI)
    pytester.makepyfile(test_user="def test_uses_fleet(ssh_fleet):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:hostbatch", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'ssh_fleet' not found*"])


def test_plugin_registered_once(pytestconfig: pytest.Config) -> None:
    plugins = pytestconfig.pluginmanager.get_plugins()
    assert [p for p in plugins if getattr(p, "__name__", "") == "hostbatch.testing.plugin"] != []
    assert (
        len([p for p in plugins if getattr(p, "__name__", "") == "hostbatch.testing.plugin"]) == 1
    )


def test_project_fleet_is_the_plugins_fleet(fleet: Fleet, ssh_fleet: Fleet) -> None:
    assert fleet is ssh_fleet
    assert [host.name for host in fleet.hosts] == [f"node0{i}" for i in range(1, 6)]


def test_project_sshd_tests_are_marked(request: pytest.FixtureRequest, sshd: object) -> None:
    assert request.node.get_closest_marker("sshd") is not None
