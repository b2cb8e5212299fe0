"""Inventory loading time and peak memory for 10k and 100k hosts (INI file, INI folder, YAML).

    .venv/bin/python bench/inventory_load.py                  # 10k and 100k hosts
    .venv/bin/python bench/inventory_load.py --sizes 10000 --profile yaml

Each case is generated in a temp dir and loaded by ``load_inventory`` in a fresh Python
process, so its peak RSS (``ru_maxrss``, interpreter and imports included) is its own.
Prints one table row per case: wall and CPU seconds of the load (CPU time is the steadier
figure on a busy machine).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GROUPS = 20
FORMATS = ("ini-file", "ini-folder", "yaml")


def host_values(index: int) -> str:
    return f"hostname = 10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}\nport = 22\n"


def write_ini_file(path: Path, hosts: int) -> Path:
    target = path / "hosts.ini"
    with target.open("w", encoding="utf-8") as out:
        out.write("[DEFAULT]\nusername = ops\n")
        for group in range(GROUPS):
            out.write(f"[group:g{group}]\nkey_file = ~/.ssh/g{group}\n")
        for index in range(hosts):
            groups = f"g{index % GROUPS}, g{(index * 7 + 1) % GROUPS}"
            out.write(f"[h{index}]\n{host_values(index)}groups = {groups}\n")
    return target


def write_ini_folder(path: Path, hosts: int) -> Path:
    folder = path / "inventory"
    folder.mkdir()
    files = [(folder / f"g{g}.ini").open("w", encoding="utf-8") for g in range(GROUPS)]
    for out in files:
        out.write("[DEFAULT]\nusername = ops\n")
    for index in range(hosts):
        files[index % GROUPS].write(f"[h{index}]\n{host_values(index)}")
        if index % 10 == 0:  # every tenth host is in a second group file too
            files[(index + 1) % GROUPS].write(f"[h{index}]\n{host_values(index)}")
    for out in files:
        out.close()
    return folder


def write_yaml(path: Path, hosts: int) -> Path:
    target = path / "hosts.yaml"
    with target.open("w", encoding="utf-8") as out:
        out.write("defaults: {username: ops}\ngroups:\n")
        for group in range(GROUPS):
            out.write(f"  g{group}: {{key_file: ~/.ssh/g{group}}}\n")
        out.write("hosts:\n")
        for index in range(hosts):
            address = f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}"
            groups = f"[g{index % GROUPS}, g{(index * 7 + 1) % GROUPS}]"
            out.write(f"  h{index}: {{hostname: {address}, port: 22, groups: {groups}}}\n")
    return target


WRITERS = {"ini-file": write_ini_file, "ini-folder": write_ini_folder, "yaml": write_yaml}


def measure(path: str, profile: bool) -> None:
    """Child process: load *path*, print JSON with seconds and peak RSS."""
    from hostbatch.inventory import load_inventory

    profiler = cProfile.Profile() if profile else None
    began = time.perf_counter()
    cpu_began = time.process_time()
    if profiler:
        profiler.enable()
    inventory = load_inventory([path], ssh_config=None, environ={})
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if profiler:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    print(json.dumps({"hosts": len(inventory), "seconds": seconds, "cpu": cpu, "peak": peak}))


def run_case(kind: str, hosts: int, profile: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hostbatch-bench-") as tmp:
        path = WRITERS[kind](Path(tmp), hosts)
        size = sum(p.stat().st_size for p in [path, *path.glob("*")] if p.is_file())
        argv = [sys.executable, __file__, "--measure", str(path)] + (["--cprofile"] * profile)
        done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=1800)
        if profile:
            print(done.stderr, file=sys.stderr)
        figures: dict[str, float] = json.loads(done.stdout)
        figures["bytes"] = size
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="host counts, comma-separated")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--profile", metavar="FORMAT", help="cProfile the load of FORMAT")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--cprofile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.cprofile)
        return
    kinds = [args.profile] if args.profile else args.formats.split(",")
    print(
        f"{'format':<11} {'hosts':>7} {'file MB':>8} {'wall s':>7} {'CPU s':>6} {'peak RSS MB':>12}"
    )
    for hosts in (int(n) for n in args.sizes.split(",")):
        for kind in kinds:
            got = run_case(kind, hosts, profile=bool(args.profile))
            assert got["hosts"] == hosts, got
            print(
                f"{kind:<11} {hosts:>7} {got['bytes'] / 1e6:>8.1f} {got['seconds']:>7.2f} "
                f"{got['cpu']:>6.2f} {got['peak'] / 1024:>12.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
