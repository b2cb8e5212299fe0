"""The agent's warm pool when runs go on at once: a network device's connection (netmiko,
one interactive channel) serves one run at a time; an SSH server's is shared."""

from __future__ import annotations

import asyncio

from hostbatch.engine.executors.agent import WarmPool
from hostbatch.models import Credentials, Host
from hostbatch.testing.sshd import OpenSSHServer
from hostbatch.transport.base import ConnectOptions, Transport
from hostbatch.transport.registry import get_transport
from tests.devices.conftest import TakeDevices, device_host


async def _settle() -> None:
    """Let every ready callback run (acquiring a warm connection needs no network)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def _two_runs(host: Host, options: ConnectOptions) -> tuple[bool, bool, int, bool]:
    """Acquire *host*'s connection for one run, then for a second: whether the second got
    it while the first held it, whether it got it after the release, the logins, and
    whether both got the same connection."""
    pool = WarmPool()
    factory = get_transport(host.transport or "asyncssh")

    def make(target: Host) -> Transport:
        return factory(target, options)

    async def connect(transport: Transport) -> None:
        await transport.connect()

    try:
        first, _ = await pool.acquire("key", host, make, connect)
        second = asyncio.ensure_future(pool.acquire("key", host, make, connect))
        await _settle()
        while_held = second.done()
        pool.release("key")
        transport, _ = await asyncio.wait_for(second, 30)
        return while_held, True, pool.logins, transport is first
    finally:
        await pool.close_all()


def test_a_device_connection_serves_one_run_at_a_time(
    take_devices: TakeDevices, connect_options: ConnectOptions
) -> None:
    host = device_host(take_devices(1)[0])
    while_held, after, logins, same = asyncio.run(_two_runs(host, connect_options))
    assert not while_held  # the second run waited for the first
    assert after and logins == 1 and same


def test_an_ssh_connection_is_shared_by_runs_at_once(sshd: OpenSSHServer) -> None:
    host = Host(
        name="h1",
        hostname="127.0.0.1",
        port=sshd.port,
        credentials=Credentials(username=sshd.username, key_file=str(sshd.client_key)),
        transport="asyncssh",
    )
    options = ConnectOptions(known_hosts=str(sshd.known_hosts))
    while_held, after, logins, same = asyncio.run(_two_runs(host, options))
    assert while_held and after and logins == 1 and same


def test_both_runs_commands_reach_the_device(
    take_devices: TakeDevices, connect_options: ConnectOptions
) -> None:
    """The second run's command, once it has the connection, gets the device's answer."""
    host = device_host(take_devices(1)[0])

    async def scenario() -> list[str]:
        pool = WarmPool()
        factory = get_transport(host.transport or "asyncssh")
        outputs: list[str] = []

        async def one() -> None:
            transport, _ = await pool.acquire(
                "key", host, lambda h: factory(h, connect_options), lambda t: t.connect()
            )
            try:
                chunks: list[bytes] = []
                status = await transport.run(
                    "show version", lambda _stream, data: chunks.append(data), 30
                )
                assert status == 0
                outputs.append(b"".join(chunks).decode())
            finally:
                pool.release("key")

        try:
            await asyncio.gather(one(), one())
        finally:
            await pool.close_all()
        return outputs

    outputs = asyncio.run(scenario())
    assert len(outputs) == 2 and all("Cisco IOS" in text for text in outputs), outputs
    assert outputs[0] == outputs[1]
