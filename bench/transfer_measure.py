"""Measure one client command line in its own process (shared by transfer.py, shell_reuse.py).

The same measurements as ``fanout_measure.measure`` (whose helpers it reuses), for any
client that is started as ``ARGV... SPEC.json RESULT.json`` and writes at least ``wall``,
``cpu``, ``ok``, ``failed`` and ``failures`` into RESULT.json:

* wall and CPU of the run itself come from the client (after interpreter start-up and
  imports; CPU includes the client's waited-for children, e.g. 20 scp/ssh processes);
* whole-process CPU and the largest single process's peak RSS come from ``os.wait4``;
* the summed PSS of the client's process tree is sampled (``TreeMemory``);
* sshd CPU is the delta of a callable (``OpenSSHServer.cpu_seconds`` summed over daemons);
* "other" CPU is the machine's busy CPU in the same window minus client and sshd.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fanout_measure import SETTLE_SECONDS, Sample, TreeMemory, _client_result, _wait, machine_busy


def measure_client(
    argv: Sequence[str],
    spec: dict[str, Any],
    sshd_cpu: Callable[[], float],
    hosts: int,
    timeout: float,
) -> tuple[Sample, dict[str, Any]]:
    """Run ``argv + [SPEC, RESULT]`` once; the Sample and the client's whole RESULT."""
    with tempfile.TemporaryDirectory(prefix="hostbatch-bench-client-") as tmp:
        spec_path, result_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
        spec_path.write_text(json.dumps(spec))
        sshd_before = sshd_cpu()
        busy_before, started = machine_busy(), time.perf_counter()
        process = subprocess.Popen(
            [*argv, str(spec_path), str(result_path)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so a timeout kills all of it
        )
        sampler = TreeMemory(process.pid)
        sampler.start()
        code, usage = _wait(process, timeout)
        process_wall = time.perf_counter() - started
        sampler.stopped.set()
        sampler.join()
        busy = machine_busy() - busy_before
        time.sleep(SETTLE_SECONDS)
        sshd = sshd_cpu() - sshd_before
        result = _client_result(result_path, code, hosts)
    process_cpu = usage.ru_utime + usage.ru_stime
    sample = Sample(
        wall=result["wall"],
        process_wall=process_wall,
        cpu=result["cpu"],
        process_cpu=process_cpu,
        max_rss_mb=usage.ru_maxrss / 1024,
        tree_pss_mb=sampler.peak_kb / 1024,
        sshd_cpu=sshd,
        other_cpu=busy - process_cpu - sshd,
        ok=result["ok"],
        failed=result["failed"],
        failures=[(str(name), str(reason)) for name, reason in result["failures"]],
    )
    return sample, result
