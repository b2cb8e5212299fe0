"""Run a plan's hosts in shards on a Dask cluster (``pip install 'hostbatch[dask]'``).

How shards run: the plan is split into shards (one per worker thread slot, ``--shards``,
or per placement group with ``--shard-by``); each shard is one Dask task,
:func:`_run_shard`, which runs hostbatch's own inline executor on its hosts inside the
worker, under ``asyncio.run`` in the worker's task thread (the worker's event loop is
never blocked).

How events travel: the shard batches its events (every ``FLUSH_SECONDS`` or
``FLUSH_EVENTS``, as the process executor does), pickles each batch and logs it with
``Worker.log_event`` on the run's topic; the worker's batched stream carries it to the
scheduler, which forwards it to the client subscribed with ``Client.subscribe_topic``.
One stream per worker, so a shard's batches arrive in order. The scheduler also keeps the
last ``distributed.admin.low-level-log-length`` (1000) batches of each topic in memory.

A host is never run twice: before starting any host, a shard claims itself with
``publish_dataset(name=<run>-shard-<i>)``, which the scheduler refuses when the name
exists (an atomic test-and-set). A retry of the task (Dask reschedules a task whose
worker was lost) finds the claim and returns at once, running nothing. The client then
reports the shard's unfinished hosts failed, as it does when it sees the claiming worker
leave the cluster (polled every ``WORKER_POLL`` seconds). Late events from a lost worker
for hosts already reported are dropped: each host has exactly one result.

Stopping: a cancelled run (Ctrl-C, SIGTERM, a failing sink) sets the run's ``cancel``
Event; each shard watches it from a thread and cancels its own run, so every host's
task is cancelled and the transports signal the remote commands, as locally. The client
waits for the shards at most ``SHARD_EXIT_WAIT`` seconds. A closed StartGate
(``--max-fail``) sets the ``stop-starting`` Event: shards start no more hosts.

The scheduler lost mid-run (killed, its machine gone): the client's connection to it
closes and Dask cancels every future; or, when it goes silent instead (stopped, a
partition), the client's calls to it fail for ``SCHEDULER_TIMEOUT`` seconds. Either way
the run does not wait for Dask to reconnect (a scheduler that comes back has forgotten
the run): every host without a result is reported ``error: dask scheduler ADDRESS lost
before this host finished``, hosts that finished keep their results, a rolling run
starts no further wave (its hosts: not started), and the client is closed within
``CLOSE_WAIT`` seconds (Dask's own reconnect records, which would repeat the news as
tracebacks, are dropped from then on). The CLI prints the summary, records the run and
exits 1, as for a lost worker.

Shards whose results can reach nobody stop themselves, cancelling their run as on a
normal cancel (remote commands signalled, no further host started), so that a host the
client reported failed does not go on running unseen. Each shard checks every
``CLIENT_POLL`` seconds (:func:`_watch_lost`): its worker's status (a dask worker closes
as soon as it loses the scheduler), whether the run's client has left the scheduler (the
scheduler logs ``remove-client`` on the topic named by the client's id, read with the
``events`` call behind ``Client.get_events``; a CLI killed with SIGKILL is removed as
soon as its connection closes, a partitioned one after Dask's TCP timeout,
``distributed.comm.timeouts.tcp``), and that the scheduler answers at all (not for
``SCHEDULER_TIMEOUT`` seconds: stop). Without this, a shard of a dead scheduler ran on
until its worker gave up waiting for it (30 s) and a shard of a killed CLI ran to its
end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import pickle
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from hostbatch.engine.executors.inline import run_hosts
from hostbatch.engine.hostrun import Emit
from hostbatch.engine.plan import Plan
from hostbatch.engine.rollout import StartGate
from hostbatch.errors import ClusterError, MissingExtraError, UsageError
from hostbatch.logs import logger
from hostbatch.models import Command, Event, Finished, Host, HostResult, Started, Status

FLUSH_SECONDS = 0.02
FLUSH_EVENTS = 256
SHARD_EXIT_WAIT = 8.0  # seconds a stopped run waits for its shards to cancel their hosts
WORKER_POLL = 0.5  # seconds between checks that the workers running shards are alive
EVENTS_WAIT = 10.0  # seconds to wait for a finished shard's last batches to arrive
WATCH_INTERVAL = 1.0  # seconds each shard-side Event wait lasts before checking again
CLIENT_POLL = 1.0  # seconds between a shard's checks that its scheduler and client are there
SCHEDULER_TIMEOUT = 10.0  # seconds of failed calls after which the scheduler counts as lost
CLOSE_WAIT = 5.0  # seconds the client may take to close once its scheduler is lost
LOST = "dask worker lost before this host finished"
SCHEDULER_LOST = "dask scheduler {address} lost before this host finished"  # the error
SECURE_SCHEMES = ("tls", "wss", "inproc")


def _distributed() -> Any:
    """The ``distributed`` module; MissingExtraError naming the extra when absent."""
    try:
        import distributed
    except ImportError:
        raise MissingExtraError("the dask engine", "dask", "distributed") from None
    return distributed


def scheduler_address(plan: Plan) -> str:
    address = plan.limits.scheduler or os.environ.get("HOSTBATCH_SCHEDULER")
    if not address:
        raise UsageError("--engine dask needs --scheduler ADDRESS (or $HOSTBATCH_SCHEDULER)")
    return address


def _is_loopback(address: str) -> bool:
    host = urlsplit(address if "://" in address else f"tcp://{address}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_secrets(host: Host | None) -> bool:
    if host is None:
        return False
    c = host.credentials
    has = any((c.password, c.passphrase, c.secret, c.become_password))
    return has or _host_secrets(host.jump)


def carries_secrets(plan: Plan) -> bool:
    """Whether the plan holds a password or passphrase (they travel to the workers)."""
    operation = plan.operation
    if isinstance(operation, Command) and operation.sudo and operation.sudo.password:
        return True
    return any(_host_secrets(host) for host in plan.hosts)


def check_scheduler(plan: Plan, address: str) -> None:
    """Refuse to send secrets over an unencrypted comm to another machine."""
    scheme = urlsplit(address).scheme if "://" in address else "tcp"
    if scheme in SECURE_SCHEMES or _is_loopback(address):
        return
    if carries_secrets(plan) and not plan.limits.allow_insecure_scheduler:
        raise UsageError(
            f"refusing to send passwords to the dask scheduler over plain {scheme}:// "
            "(use a tls:// scheduler, or --allow-insecure-scheduler)"
        )


# ---------------------------------------------------------------- worker side


class _TopicBatcher:
    """A shard's events, pickled in batches onto the run's topic (worker → client)."""

    def __init__(self, worker: Any, topic: str, index: int) -> None:
        self.worker = worker
        self.topic = topic
        self.head = {"shard": index, "worker_name": str(worker.name), "pid": os.getpid()}
        self.batch: list[Event] = []
        self.sent = 0
        self.last = time.monotonic()

    def __call__(self, event: Event) -> None:
        self.batch.append(event)
        if len(self.batch) >= FLUSH_EVENTS or time.monotonic() - self.last >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            data = pickle.dumps(self.batch, protocol=pickle.HIGHEST_PROTOCOL)
            self.worker.log_event(self.topic, {**self.head, "seq": self.sent, "events": data})
            self.sent += 1
            self.batch = []
        self.last = time.monotonic()

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush()


def _watch(event: Any, done: threading.Event, then: Callable[[], None]) -> None:
    """In a thread: call *then* once the cluster-wide *event* is set (until *done*)."""
    while not done.is_set():
        with contextlib.suppress(Exception):
            if event.wait(timeout=WATCH_INTERVAL):
                then()
                return


def _client_left(client: Any, client_id: str) -> bool:
    """Whether the run's client has left the scheduler: the scheduler logs
    ``remove-client`` on the topic named by the client's id as soon as the client's
    connection closes. Raises (OSError, TimeoutError, ...) when the scheduler does not
    answer within ``SCHEDULER_TIMEOUT``."""
    events = client.sync(
        client.scheduler.events, topic=client_id, callback_timeout=SCHEDULER_TIMEOUT
    )
    return any(isinstance(m, dict) and m.get("action") == "remove-client" for _, m in events)


def _lost_reason(worker: Any, client: Any, client_id: str | None) -> str | None:
    """Why the shard's run has nobody to report to any more, or None while it has."""
    if str(getattr(worker.status, "name", "running")) in ("closing", "closed", "failed"):
        return "its dask worker lost the scheduler (or is closing)"
    if client_id is not None and _client_left(client, client_id):
        return "the run's client left the dask scheduler"
    return None


def _watch_lost(
    worker: Any,
    client: Any,
    client_id: str | None,
    done: threading.Event,
    then: Callable[[str], None],
) -> None:
    """In a thread: call *then* with the reason once the shard's results can reach nobody:
    its worker lost the scheduler, the run's client left it (killed, SIGKILL, network),
    or the scheduler did not answer for ``SCHEDULER_TIMEOUT`` seconds."""
    answered = time.monotonic()
    while not done.wait(CLIENT_POLL):
        try:
            reason = _lost_reason(worker, client, client_id)
        except Exception:
            if time.monotonic() - answered < SCHEDULER_TIMEOUT:
                continue
            reason = f"the dask scheduler did not answer for {SCHEDULER_TIMEOUT:g}s"
        else:
            answered = time.monotonic()
        if reason is not None:
            then(reason)
            return


def _run_shard(plan: Plan, run_id: str, index: int, client_id: str | None = None) -> dict[str, Any]:
    """The Dask task: run one shard's hosts in this worker; returns how many batches it
    sent; ``retried`` when another attempt already claimed the shard, ``orphaned`` when
    its results could reach nobody before it started. *client_id*: the run's client,
    whose leaving the scheduler stops the shard (None: not watched)."""
    distributed = _distributed()
    worker = distributed.get_worker()
    client = distributed.get_client()
    try:
        client.publish_dataset(str(worker.address), name=f"{run_id}-shard-{index}")
    except KeyError:  # an earlier attempt started: its hosts are the client's to report
        return {"batches": 0, "retried": True}
    cancel = distributed.Event(f"{run_id}-cancel", client=client)
    if cancel.is_set():  # the run was stopped before this shard started: start nothing
        return {"batches": 0, "cancelled": True}
    with contextlib.suppress(Exception):  # unanswered: the watcher below decides
        if _lost_reason(worker, client, client_id) is not None:
            return {"batches": 0, "orphaned": True}
    batcher = _TopicBatcher(worker, run_id, index)
    stop_starting = distributed.Event(f"{run_id}-stop-starting", client=client)
    done = threading.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        run = asyncio.current_task()
        assert run is not None
        gate = StartGate()

        def orphaned(reason: str) -> None:
            logger.warning(
                "hostbatch shard %d of %s: %s; stopping its hosts", index, run_id, reason
            )
            loop.call_soon_threadsafe(run.cancel)

        watchers = [
            threading.Thread(
                target=_watch,
                args=(cancel, done, lambda: loop.call_soon_threadsafe(run.cancel)),
                daemon=True,
            ),
            threading.Thread(
                target=_watch,
                args=(stop_starting, done, lambda: loop.call_soon_threadsafe(gate.close, "")),
                daemon=True,
            ),
            threading.Thread(
                target=_watch_lost, args=(worker, client, client_id, done, orphaned), daemon=True
            ),
        ]
        for watcher in watchers:
            watcher.start()
        ticker = asyncio.create_task(batcher.tick())
        try:
            await run_hosts(plan, batcher, gate=gate)
        finally:
            ticker.cancel()
            done.set()

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main())
    batcher.flush()
    return {"batches": batcher.sent}


# ---------------------------------------------------------------- client side


@dataclass(frozen=True)
class ShardInfo:
    """Where a shard runs, as its first batch says (for logs and tests). (The scheduler
    adds its own "worker" key, the address, to each message: ours is "worker_name".)"""

    index: int
    worker: str
    pid: int
    hosts: tuple[str, ...]


@dataclass
class _Shard:
    index: int
    plan: Plan
    future: Any
    claim: str  # the dataset name the shard claims itself under
    unfinished: set[str]
    started: dict[str, float] = field(default_factory=dict)
    received: int = 0
    worker: str | None = None  # name, from the first batch
    address: str | None = None  # from the claim, once looked up
    ended_cleanly: bool = False  # the task returned after running its hosts

    def fail_unfinished(self, emit: Emit, error: str) -> None:
        for name in sorted(self.unfinished):
            now = time.time()
            began = self.started.get(name, now)
            result = HostResult(name, Status.ERROR, error=error, started=began, ended=now)
            emit(Finished(result))
        self.unfinished.clear()


def _placement_value(host: Host, key: str) -> str | None:
    prefix = f"{key}_"
    values = {
        g[len(prefix) :] for g in host.groups if g.startswith(prefix) and len(g) > len(prefix)
    }
    if len(values) > 1:
        raise UsageError(
            f"{host.name}: in several '{prefix}*' groups ({', '.join(sorted(values))})"
        )
    return values.pop() if values else None


def _serves(info: dict[str, Any], value: str) -> bool:
    name = str(info.get("name", ""))
    return name == value or name.startswith(f"{value}-") or value in info.get("resources", {})


@dataclass(frozen=True)
class _Group:
    hosts: tuple[Host, ...]
    workers: tuple[str, ...] | None  # addresses; None: anywhere
    threads: int


def placement(plan: Plan, workers: dict[str, dict[str, Any]]) -> list[_Group]:
    """Hosts grouped by ``--shard-by`` value, each with the workers that may run it."""
    total = sum(int(w.get("nthreads", 1)) for w in workers.values())
    key = plan.limits.shard_by
    if key is None:
        return [_Group(plan.hosts, None, total)]
    by_value: dict[str | None, list[Host]] = {}
    for host in plan.hosts:
        by_value.setdefault(_placement_value(host, key), []).append(host)
    groups = []
    for value, hosts in by_value.items():
        if value is None:
            groups.append(_Group(tuple(hosts), None, total))
            continue
        serving = {a: w for a, w in workers.items() if _serves(w, value)}
        if not serving:
            raise UsageError(
                f"no dask worker serves {key}={value}: start one with --name {value} "
                f"(or --name {value}-N, or --resources {value}=1)"
            )
        threads = sum(int(w.get("nthreads", 1)) for w in serving.values())
        groups.append(_Group(tuple(hosts), tuple(sorted(serving)), threads))
    return groups


def shard_plans(plan: Plan, groups: list[_Group]) -> Iterator[tuple[Plan, _Group]]:
    """Each group's hosts split into its shards (strided, as the process executor does);
    the run's fanout is split between all shards."""
    counts = [min(len(g.hosts), plan.limits.shards or max(1, g.threads)) for g in groups]
    fanout = max(1, -(-plan.limits.fanout_or_default() // sum(counts)))
    for group, count in zip(groups, counts, strict=True):
        for index in range(count):
            hosts = group.hosts[index::count]
            limits = replace(plan.limits, fanout=fanout)
            yield replace(plan, hosts=hosts, limits=limits), group


class DaskRun:
    """One run's connection to the cluster; :meth:`run_wave` runs a (sub)plan on it."""

    def __init__(
        self, client: Any, on_shard: Callable[[ShardInfo], None] | None, address: str = ""
    ) -> None:
        self.client = client
        self.distributed = _distributed()
        self.on_shard = on_shard
        self.address = address
        self.lost: str | None = None  # set once the scheduler is lost: the hosts' error
        self._pending: set[asyncio.Future[Any]] = set()
        self._quiet = _DropClientRecords()

    def scheduler_lost(self) -> bool:
        """Whether the scheduler is gone: declared lost, or the client's connection to it
        closed (Dask then cancels every future and tries to reconnect; a scheduler that
        comes back has forgotten the run, so the run does not wait for that)."""
        if self.lost is None and self.client.status != "running":
            self._declare_lost()
        return self.lost is not None

    def _lost_error(self) -> str:
        return self.lost or SCHEDULER_LOST.format(address=self.address)

    def _declare_lost(self) -> None:
        if self.lost is None:
            self.lost = SCHEDULER_LOST.format(address=self.address)
            logging.getLogger("distributed.client").addFilter(self._quiet)
            logger.warning(
                "dask scheduler %s lost; failing the hosts without a result", self.address
            )

    async def workers(self) -> dict[str, dict[str, Any]]:
        identity = await self.client.scheduler.identity()
        workers: dict[str, dict[str, Any]] = identity.get("workers", {})
        return workers

    async def run_wave(self, plan: Plan, emit: Emit, gate: StartGate | None) -> None:
        if self.lost is not None:  # an earlier wave lost the scheduler: nothing to run on
            now = time.time()
            for host in plan.hosts:
                emit(Finished(HostResult(host.name, Status.ERROR, error=self.lost, ended=now)))
            return
        run_id = f"hostbatch-{uuid.uuid4().hex}"
        groups = placement(plan, await self.workers())
        shards: list[_Shard] = []
        by_index: dict[int, _Shard] = {}
        self.client.subscribe_topic(
            run_id, lambda event: self._receive(event, by_index, emit, gate)
        )
        for index, (shard_plan, group) in enumerate(shard_plans(plan, groups)):
            future = self.client.submit(
                _run_shard,
                shard_plan,
                run_id,
                index,
                self.client.id,
                key=f"{run_id}-task-{index}",
                pure=False,
                retries=0,
                workers=list(group.workers) if group.workers else None,
                allow_other_workers=False,
            )
            claim = f"{run_id}-shard-{index}"
            shard = _Shard(index, shard_plan, future, claim, {h.name for h in shard_plan.hosts})
            shards.append(shard)
            by_index[index] = shard
        if gate is not None:
            gate.on_close(lambda: self._set_event(f"{run_id}-stop-starting"))
        try:
            await self._wait(shards, emit)
        except asyncio.CancelledError:
            if not self.scheduler_lost():
                await self._stop(run_id, shards)
                await self._cleanup(run_id, shards, stopped=True)
            raise
        if self.scheduler_lost():  # its state went with it: nothing to clean up
            if gate is not None:
                gate.close(f"not started: the dask scheduler {self.address} was lost")
            return
        await self._cleanup(run_id, shards, stopped=False)

    def _receive(
        self,
        event: tuple[float, Any],
        by_index: dict[int, _Shard],
        emit: Emit,
        gate: StartGate | None,
    ) -> None:
        message = event[1]
        shard = by_index.get(message["shard"])
        if shard is None:
            return
        if shard.worker is None:
            shard.worker = message["worker_name"]
            hosts = tuple(h.name for h in shard.plan.hosts)
            info = ShardInfo(shard.index, message["worker_name"], message["pid"], hosts)
            logger.info(
                "shard %d (%d hosts) on dask worker %s", info.index, len(hosts), info.worker
            )
            if self.on_shard is not None:
                self.on_shard(info)
        shard.received += 1
        for event_received in pickle.loads(message["events"]):
            received: Event = event_received
            host = getattr(received, "host", None)  # None: a run-wide event (no host)
            if host is not None and host not in shard.unfinished:
                continue  # already reported (its worker was given up as lost)
            if isinstance(received, Started):
                shard.started[received.host] = received.at
            elif isinstance(received, Finished):
                shard.unfinished.discard(received.host)
                if received.result.status is Status.NOT_STARTED and gate is not None:
                    received = Finished(replace(received.result, error=gate.reason))
            emit(received)

    async def _wait(self, shards: list[_Shard], emit: Emit) -> None:
        """Until every shard is done, or the monitor finds the scheduler lost: then every
        host without a result fails with :data:`SCHEDULER_LOST` (the shards, cut off from
        the scheduler, cancel their hosts themselves: :func:`_watch_lost`)."""
        watchers: asyncio.Future[Any] = asyncio.gather(
            *(self._watch_shard(s, emit) for s in shards)
        )
        monitor: asyncio.Future[Any] = asyncio.ensure_future(self._monitor(shards, emit))
        try:
            await asyncio.wait({watchers, monitor}, return_when=asyncio.FIRST_COMPLETED)
            if self.scheduler_lost():
                for shard in shards:
                    shard.fail_unfinished(emit, self._lost_error())
            elif watchers.done():
                watchers.result()
            else:
                monitor.result()  # raises what stopped the monitor: a bug
                raise AssertionError("the dask monitor ended before the shards")
        finally:
            monitor.cancel()
            watchers.cancel()
            await asyncio.gather(monitor, watchers, return_exceptions=True)

    async def _watch_shard(self, shard: _Shard, emit: Emit) -> None:
        try:
            outcome = await shard.future
        except asyncio.CancelledError:
            if not shard.future.cancelled():
                raise  # this run was cancelled, not the shard
            shard.fail_unfinished(emit, self._lost_error() if self.scheduler_lost() else LOST)
            return
        except Exception as exc:
            error = LOST
            if self.scheduler_lost():
                error = self._lost_error()
            elif "KilledWorker" not in type(exc).__name__:
                error = f"dask shard failed: {type(exc).__name__}: {exc}"
            shard.fail_unfinished(emit, error)
            return
        if outcome.get("retried"):
            shard.fail_unfinished(emit, LOST)
            return
        shard.ended_cleanly = True
        deadline = time.monotonic() + EVENTS_WAIT
        while shard.received < outcome["batches"] and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        shard.fail_unfinished(emit, "dask shard ended without reporting this host")

    async def _monitor(self, shards: list[_Shard], emit: Emit) -> None:
        """Give up the unfinished hosts of shards whose worker left the cluster; return
        once the scheduler is lost: the client's connection to it closed, or it has not
        answered for ``SCHEDULER_TIMEOUT`` seconds (a silent death, a partition)."""
        answered = time.monotonic()
        while not self.scheduler_lost():
            await asyncio.sleep(WORKER_POLL)
            if self.scheduler_lost():
                return
            left = SCHEDULER_TIMEOUT - (time.monotonic() - answered)
            try:
                await asyncio.wait_for(self._check_workers(shards, emit), max(left, 0.1))
            except Exception:
                if time.monotonic() - answered >= SCHEDULER_TIMEOUT:
                    self._declare_lost()
                continue
            answered = time.monotonic()

    async def _check_workers(self, shards: list[_Shard], emit: Emit) -> None:
        live = set(await self.workers())
        for shard in shards:
            if not shard.unfinished or shard.future.done():
                continue
            if shard.address is None:
                shard.address = await self.client.get_dataset(shard.claim, default=None)
            if shard.address is not None and shard.address not in live:
                shard.fail_unfinished(emit, LOST)
                with contextlib.suppress(Exception):
                    await shard.future.cancel()

    def _set_event(self, name: str) -> None:
        if self.lost is not None:
            return
        event = self.distributed.Event(name, client=self.client)
        task = asyncio.ensure_future(event.set())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _stop(self, run_id: str, shards: list[_Shard]) -> None:
        """Cancelled: tell every shard to cancel its hosts; wait for them a while."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.distributed.Event(f"{run_id}-cancel", client=self.client).set(), 5
            )
        pending = [_settled(s.future) for s in shards if not s.future.done()]
        if pending:
            await asyncio.wait(pending, timeout=SHARD_EXIT_WAIT)

    async def _cleanup(self, run_id: str, shards: list[_Shard], *, stopped: bool) -> None:
        """Forget the run on the scheduler, except what keeps late attempts from running
        hosts: the claims of shards that did not end cleanly (a retry may be in flight),
        and a stopped run's ``cancel`` Event (a shard already handed to a worker starts
        nothing). Those stay on the scheduler: a few bytes each."""
        with contextlib.suppress(Exception):
            self.client.unsubscribe_topic(run_id)
        with contextlib.suppress(Exception):
            await self.client.cancel([s.future for s in shards], force=True)
        for shard in shards:
            if shard.ended_cleanly:  # else a retry may still be in flight: keep the claim
                with contextlib.suppress(Exception):
                    await self.client.unpublish_dataset(shard.claim)
        for name in ("stop-starting",) if stopped else ("cancel", "stop-starting"):
            with contextlib.suppress(Exception):
                await self.distributed.Event(f"{run_id}-{name}", client=self.client).clear()

    async def close(self) -> None:
        """Close the client; after a lost scheduler within ``CLOSE_WAIT`` seconds (Dask
        would go on trying to reconnect for the connect timeout)."""
        try:
            if self.lost is None:
                await self.client.close()
            else:
                await asyncio.wait_for(self.client.close(), CLOSE_WAIT)
        finally:
            logging.getLogger("distributed.client").removeFilter(self._quiet)


class _DropClientRecords(logging.Filter):
    """Once hostbatch has reported the scheduler lost (as every unfinished host's error),
    the Dask client's own records of it (its reconnect attempts, failing or cut short by
    closing, with tracebacks) say it again, less clearly: dropped until it is closed."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


def _settled(future: Any) -> asyncio.Future[None]:
    """An asyncio future done when the Dask *future* is, whatever its outcome."""

    async def wait() -> None:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await future

    return asyncio.ensure_future(wait())


async def run_on_dask(
    plan: Plan,
    emit: Emit,
    on_shard: Callable[[ShardInfo], None] | None = None,
) -> None:
    """Run *plan* on the Dask cluster of ``plan.limits.scheduler``; a rolling plan wave
    by wave over one client."""
    from hostbatch.engine.rollout import run_rollout

    cluster = await connect(plan, on_shard)
    try:
        if plan.limits.rolling:
            await run_rollout(plan, emit, cluster.run_wave)
        else:
            await cluster.run_wave(plan, emit, None)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(cluster.close())


async def connect(plan: Plan, on_shard: Callable[[ShardInfo], None] | None = None) -> DaskRun:
    """A client of the run's scheduler with at least one worker; ClusterError (exit 3)
    before any host is touched when there is none within the connect timeout."""
    distributed = _distributed()
    address = scheduler_address(plan)
    check_scheduler(plan, address)
    timeout = plan.options.connect_timeout
    try:
        client = await distributed.Client(
            address, asynchronous=True, timeout=timeout, set_as_default=False
        )
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the dask scheduler at {address}: {exc}") from None
    try:
        await client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError):
        await client.close()
        raise ClusterError(
            f"the dask scheduler at {address} has no workers (waited {timeout:g}s)"
        ) from None
    return DaskRun(client, on_shard, address)
