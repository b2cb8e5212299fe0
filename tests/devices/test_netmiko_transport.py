"""The netmiko transport against fake Cisco IOS devices (fake-switches) on loopback."""

from __future__ import annotations

import asyncio
import importlib.metadata
import re
import socket
import time
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import asyncssh
import pytest
from netmiko import BaseConnection

import hostbatch
from hostbatch.api import RunOptions
from hostbatch.errors import (
    AuthenticationError,
    ConnectionLost,
    HostKeyError,
    MissingExtraError,
    RemoteFileError,
    TransportError,
)
from hostbatch.models import Command, CommandSet, Credentials, Host, HostResult, Secret, Status
from hostbatch.transport.base import ConnectOptions, DeviceTransport
from hostbatch.transport.netmiko_ import (
    SUPPORTED_NETMIKO,
    NetmikoTransport,
    check_netmiko_hooks,
    platform_for,
)
from tests.devices.conftest import TakeDevices, device_host
from tests.devices.fake_ios import FakeIOS

pytestmark = pytest.mark.devices


def run(
    operation: str | Command | CommandSet, hosts: list[Host], options: RunOptions
) -> dict[str, HostResult]:
    return hostbatch.api.run(operation, hosts=hosts, options=options)


def test_show_commands_after_enable(take_devices: TakeDevices, run_options: RunOptions) -> None:
    device = take_devices(1)[0]
    commands = CommandSet(("show version", "show running-config"))
    result = run(commands, [device_host(device)], run_options)[device.name]
    assert result.status is Status.OK, result.error
    version, running = result.outputs
    assert (version.command, version.error) == ("show version", None)
    assert "Cisco IOS Software" in version.output
    assert f"hostname {device.name}" in running.output
    assert "Cisco IOS Software" in result.stdout_text  # streamed too


def test_a_step_that_times_out_keeps_what_ran_before(
    take_devices: TakeDevices, run_options: RunOptions
) -> None:
    device = take_devices(1)[0]
    # 'configure terminal' as a plain command: the prompt becomes 'sw(config)#', so the
    # prompt netmiko waits for never comes back and the step times out.
    commands = CommandSet(("show version", "configure terminal", "show running-config"), timeout=2)
    result = run(commands, [device_host(device)], run_options)[device.name]
    assert result.status is Status.TIMEOUT, result.error
    assert result.error is not None and "'configure terminal'" in result.error
    version, stuck = result.outputs  # the step after the stuck one never ran
    assert version.error is None and "Cisco IOS Software" in version.output
    assert stuck.command == "configure terminal"
    assert stuck.error is not None and "no prompt within 2s" in stuck.error


def test_a_device_that_closes_the_session_keeps_what_ran_before(
    take_devices: TakeDevices, run_options: RunOptions
) -> None:
    device = take_devices(1)[0]
    commands = CommandSet(("show version", "exit", "show running-config"), timeout=20)
    began = time.monotonic()
    result = run(commands, [device_host(device)], run_options)[device.name]
    assert time.monotonic() - began < 10  # noticed at once, not at the 20 s timeout
    assert result.status is Status.DROPPED, result.error
    assert result.error == "connection lost during 'exit': the device closed the session"
    version, closed = result.outputs
    assert "Cisco IOS Software" in version.output
    assert closed.command == "exit" and closed.error == result.error


def test_single_command_and_enable_needed(
    take_devices: TakeDevices, run_options: RunOptions
) -> None:
    enabled, user_mode = take_devices(2)
    no_secret = Credentials(username="root", password=Secret("root"))
    hosts = [device_host(enabled), device_host(user_mode, credentials=no_secret)]
    results = run("show version", hosts, run_options)
    assert results[enabled.name].status is Status.OK
    assert results[enabled.name].exit_status == 0
    assert "Cisco IOS Software" in results[enabled.name].stdout_text
    # without an enable secret the session stays at '>', where only 'enable' exists
    failed = results[user_mode.name]
    assert failed.status is Status.FAILED
    assert failed.error == "'show version': % Invalid input detected at '^' marker."


def test_wrong_enable_secret_is_an_auth_failure(
    take_devices: TakeDevices, run_options: RunOptions
) -> None:
    device = take_devices(1)[0]
    creds = Credentials(username="root", password=Secret("root"), secret=Secret("s3cr3t-nope"))
    result = run("show version", [device_host(device, credentials=creds)], run_options)
    assert result[device.name].status is Status.AUTH_FAILED
    assert "enable" in (result[device.name].error or "")
    assert "s3cr3t-nope" not in (result[device.name].error or "")


def test_config_set_then_running_config(take_devices: TakeDevices, run_options: RunOptions) -> None:
    device = take_devices(1)[0]
    commands = CommandSet(("show running-config",), config=("vlan 42", "name lab42"))
    result = run(commands, [device_host(device)], run_options)[device.name]
    assert result.status is Status.OK, result.error
    config, running = result.outputs
    assert (config.command, config.error) == ("config", None)
    assert "vlan 42" in config.output
    assert "vlan 42" in running.output and "name lab42" in running.output
    # the change outlives the session
    again = run("show running-config", [device_host(device)], run_options)[device.name]
    assert "name lab42" in again.stdout_text


def test_rejected_config_line_stops_the_set_and_skips_save(
    take_devices: TakeDevices, run_options: RunOptions
) -> None:
    device = take_devices(1)[0]
    config = ("vlan 43", "bogus thing", "vlan 44")
    commands = CommandSet(("show vlan",), config=config, save=True)
    result = run(commands, [device_host(device)], run_options)[device.name]
    assert result.status is Status.FAILED
    rejected, save, show = result.outputs
    assert rejected.error == "'bogus thing': % Invalid input detected at '^' marker."
    assert (save.command, save.error, save.note) == (
        "save",
        None,
        "not saved: the configuration was rejected",
    )
    assert show.error is None and "43" in show.output and "44" not in show.output
    assert result.error == f"config: {rejected.error}"


def test_save_writes_memory(take_devices: TakeDevices, run_options: RunOptions) -> None:
    device = take_devices(1)[0]
    commands = CommandSet(config=("vlan 77",), save=True)
    result = run(commands, [device_host(device)], run_options)[device.name]
    assert result.status is Status.OK, result.error
    assert [o.command for o in result.outputs] == ["config", "save"]
    save = result.outputs[1]
    assert save.error is None
    assert "write mem" in save.output and "OK" in save.output


def test_parse_with_and_without_template(
    take_devices: TakeDevices, run_options: RunOptions
) -> None:
    device = take_devices(1)[0]
    commands = CommandSet(("show version", "show running-config"), parse=True)
    result = run(commands, [device_host(device)], run_options)[device.name]
    assert result.status is Status.OK, result.error
    version, running = result.outputs
    assert version.parsed is not None and version.note is None
    assert version.parsed[0]["hostname"] == device.name
    assert version.parsed[0]["version"] == "12.2(58)SE2"
    assert "Cisco IOS Software" in version.output  # the raw output is kept as well
    assert running.parsed is None
    assert running.note == "no TextFSM template for 'show running-config'"
    assert f"hostname {device.name}" in running.output


def test_invalid_input_fails_that_command_only(
    take_devices: TakeDevices, run_options: RunOptions
) -> None:
    devices = take_devices(3)
    commands = CommandSet(("show version", "show bogus-thing nonsense", "frobnicate", "show vlan"))
    results = run(commands, [device_host(d) for d in devices], run_options)
    for device in devices:
        result = results[device.name]
        assert result.status is Status.FAILED
        assert [o.command for o in result.outputs] == list(commands.commands)
        assert [o.error is None for o in result.outputs] == [True, True, False, True]
        assert "VLAN Name" in result.outputs[3].output  # the next command still ran
        assert result.error == "frobnicate: % Invalid input detected at '^' marker."


def test_wrong_password_is_auth_failed(take_devices: TakeDevices, run_options: RunOptions) -> None:
    good, bad = take_devices(2)
    creds = Credentials(username="root", password=Secret("hunter2-wrong"), secret=Secret("root"))
    results = run(
        "show version", [device_host(good), device_host(bad, credentials=creds)], run_options
    )
    assert results[good.name].status is Status.OK
    assert results[bad.name].status is Status.AUTH_FAILED
    assert results[bad.name].error == "authentication failed (offered: password)"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections (kernel backlog) and never says anything."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def _fast(options: RunOptions, timeout: float) -> RunOptions:
    return replace(options, connect=replace(options.connect, connect_timeout=timeout))


def test_refused_no_banner_and_no_prompt_are_per_host_errors(
    take_devices: TakeDevices, run_options: RunOptions, fake_ios: FakeIOS, silent_port: int
) -> None:
    ok = take_devices(1)[0]
    refused = replace(ok, name="refused", port=_free_port())
    silent = replace(ok, name="silent", port=silent_port)
    mute = fake_ios.mute[0]
    hosts = [device_host(d) for d in (ok, refused, silent, mute)]
    began = time.monotonic()
    results = run("show version", hosts, _fast(run_options, 2.0))
    assert time.monotonic() - began < 8
    assert results[ok.name].status is Status.OK
    assert results["refused"].status is Status.UNREACHABLE
    assert results["refused"].error == f"connection refused (127.0.0.1:{refused.port})"
    assert results["silent"].status is Status.UNREACHABLE
    assert results["silent"].error == f"no SSH handshake within 2s (127.0.0.1:{silent_port})"
    assert results[mute.name].status is Status.UNREACHABLE
    assert (
        results[mute.name].error
        == f"logged in, but no CLI prompt within 2s (127.0.0.1:{mute.port})"
    )


def test_fifty_devices_in_one_run(take_devices: TakeDevices, run_options: RunOptions) -> None:
    devices = take_devices(50)
    commands = CommandSet(("show version", "show running-config"))
    began = time.monotonic()
    results = run(commands, [device_host(d) for d in devices], run_options)
    elapsed = time.monotonic() - began
    assert [r.status for r in results.values()] == [Status.OK] * 50, {
        n: r.error for n, r in results.items() if not r.ok
    }
    for device in devices:
        assert f"hostname {device.name}" in results[device.name].outputs[1].output
    assert elapsed < 45


def test_seed_netmiko_dicts(take_devices: TakeDevices, run_options: RunOptions) -> None:
    r1, sw1, sw2 = (d.netmiko() for d in take_devices(3))
    sw2 = {**sw2, "name": "SW2", "ip": sw2.pop("host"), "fast_cli": False}
    results = hostbatch.run("show running-config", hosts=[r1, sw1, sw2], options=run_options)
    assert list(results) == [f"127.0.0.1:{r1['port']}", f"127.0.0.1:{sw1['port']}", "SW2"]
    assert all(r.ok for r in results.values()), {n: r.error for n, r in results.items()}
    assert all("hostname sw" in r.stdout_text for r in results.values())


def test_host_keys_unknown_changed_and_accept_new(
    take_devices: TakeDevices, fake_ios: FakeIOS, tmp_path: Path
) -> None:
    unknown, changed, accepted = take_devices(3)
    known = tmp_path / "known_hosts"
    other_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    known.write_text(f"[127.0.0.1]:{changed.port} {other_key}\n")
    strict = RunOptions(connect=ConnectOptions(connect_timeout=8, known_hosts=str(known)))
    # One run each: fake-switches' SSH server (Twisted) sometimes answers 'Peer version
    # string longer than 4KB' when two clients drop it right after key exchange at once
    # (5 in 60 such pairs with asyncssh; 0 in 60 one at a time).
    results = run("show version", [device_host(unknown)], strict)
    assert results[unknown.name].status is Status.HOSTKEY
    assert "is not in" in (results[unknown.name].error or "")
    results = run("show version", [device_host(changed)], strict)
    assert results[changed.name].status is Status.HOSTKEY
    assert "HOST KEY CHANGED" in (results[changed.name].error or "")

    accept = replace(strict, connect=replace(strict.connect, host_keys="accept-new"))
    assert run("show version", [device_host(accepted)], accept)[accepted.name].ok
    assert f"[127.0.0.1]:{accepted.port} ssh-rsa " in known.read_text()
    assert run("show version", [device_host(accepted)], strict)[accepted.name].ok


def test_transport_contract_and_no_file_transfer(connect_options: ConnectOptions) -> None:
    host = Host("r1", "127.0.0.1", device_type="cisco_ios", transport="netmiko")
    transport = NetmikoTransport(host, connect_options)
    assert isinstance(transport, DeviceTransport)
    with pytest.raises(RemoteFileError, match="not supported on network devices"):
        asyncio.run(transport.stat("flash:/x"))
    assert platform_for("cisco_nxos") is platform_for("cisco_ios")
    assert platform_for("juniper_junos").error_in("foo\nsyntax error, expecting x\n") == (
        "syntax error, expecting x"
    )


def test_errors_are_translated_at_the_boundary(
    take_devices: TakeDevices, connect_options: ConnectOptions
) -> None:
    device = take_devices(1)[0]
    creds = Credentials(username="root", password=Secret("wrong-pw"))
    transport = NetmikoTransport(device_host(device, credentials=creds), connect_options)

    async def attempt() -> None:
        try:
            await transport.connect()
        finally:
            await transport.close()

    with pytest.raises(AuthenticationError) as caught:
        asyncio.run(attempt())
    assert "wrong-pw" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    unknown = ConnectOptions(connect_timeout=8, known_hosts="/nonexistent/known_hosts")
    with pytest.raises(HostKeyError):
        asyncio.run(_connect_once(NetmikoTransport(device_host(device), unknown)))


async def _connect_once(transport: NetmikoTransport) -> None:
    try:
        await transport.connect()
    finally:
        await transport.close()


def test_unsupported_device_type_fails_before_connecting(connect_options: ConnectOptions) -> None:
    port = _free_port()  # nothing listens: a connection attempt would say "refused"
    host = Host("r1", "127.0.0.1", port, device_type="cisco_bogus", transport="netmiko")
    with pytest.raises(TransportError, match="unsupported device_type 'cisco_bogus'"):
        asyncio.run(_connect_once(NetmikoTransport(host, connect_options)))


class _ClosingServer(asyncssh.SSHServer):
    """Takes any password, then ends every session at once: a device that drops the
    session after login."""

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return True


async def _connect_to_closing_server(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(
        _ClosingServer,
        "127.0.0.1",
        0,
        server_host_keys=[key],
        process_factory=lambda process: process.exit(0),
    )
    port = server.sockets[0].getsockname()[1]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {key.export_public_key().decode()}")
    creds = Credentials(username="admin", password=Secret("pw"))
    host = Host("r1", "127.0.0.1", port, creds, device_type="cisco_ios", transport="netmiko")
    options = ConnectOptions(connect_timeout=8, known_hosts=str(known))
    try:
        await _connect_once(NetmikoTransport(host, options))
    finally:
        server.close()
        await server.wait_closed()


def test_a_session_closed_during_login_is_a_lost_connection(tmp_path: Path) -> None:
    began = time.monotonic()
    with pytest.raises(ConnectionLost, match="the device closed the session during login"):
        asyncio.run(_connect_to_closing_server(tmp_path))
    assert time.monotonic() - began < 6  # noticed, not waited out to the 8 s timeout


class _NoHooks:
    """A netmiko BaseConnection stand-in without the private hooks (a future netmiko)."""


class _OpenWantsArguments:
    def _build_ssh_client(self) -> None:
        """Present, as in netmiko 4.x."""

    def _open(self, width: int) -> None:
        """Changed: now needs an argument."""


def test_a_netmiko_without_the_private_hooks_is_refused_in_one_line() -> None:
    check_netmiko_hooks(BaseConnection, "4.8.0")  # the installed netmiko passes
    with pytest.raises(MissingExtraError) as caught:
        check_netmiko_hooks(_NoHooks, "5.0.0")
    assert str(caught.value) == (
        "the netmiko transport (netmiko 5.0.0 has no usable _NoHooks._build_ssh_client) "
        "needs the 'netmiko>=4.5,<4.9' package: pip install 'hostbatch[netmiko]'"
    )
    assert caught.value.exit_code == 2
    with pytest.raises(MissingExtraError, match=r"no usable _OpenWantsArguments\._open\)"):
        check_netmiko_hooks(_OpenWantsArguments, "4.99")


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def test_the_netmiko_pin_is_the_supported_range_and_holds_the_installed_one() -> None:
    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    pins = {name: req for name, reqs in extras.items() for req in reqs if req.startswith("netmiko")}
    assert pins == dict.fromkeys(("netmiko", "all", "dev"), f"netmiko{SUPPORTED_NETMIKO}")
    low, high = re.fullmatch(r">=([\d.]+),<([\d.]+)", SUPPORTED_NETMIKO).groups()  # type: ignore[union-attr]
    installed = _release(importlib.metadata.version("netmiko"))
    assert _release(low) <= installed < _release(high)


def _discard(stream: str, data: bytes) -> None:
    """Output is not what these tests look at."""


def test_is_alive_while_open_and_after_the_device_closed_the_session(
    take_devices: TakeDevices, connect_options: ConnectOptions
) -> None:
    device = take_devices(1)[0]
    transport = NetmikoTransport(device_host(device), connect_options)

    async def scenario() -> list[bool]:
        states = [await transport.is_alive()]  # not connected yet
        try:
            await transport.connect()
            states.append(await transport.is_alive())
            # is_alive() wrote a NUL byte to the session: the next command still works
            assert await transport.run("show version", _discard, 10) == 0
            with pytest.raises(ConnectionLost, match="the device closed the session"):
                await transport.run("exit", _discard, 10)
            states.append(await transport.is_alive())
        finally:
            await transport.close()
        states.append(await transport.is_alive())
        return states

    assert asyncio.run(scenario()) == [False, True, False, False]
