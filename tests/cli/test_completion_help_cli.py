"""`hostbatch completion`, host/group completion through click's protocol, `hostbatch help`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hostbatch.cli.help_topics import EXIT_CODES, SELECTION_TERMS, TOPICS
from hostbatch.inventory.records import HOST_KEYS
from tests.fixtures.cli import cli_argv, cli_env, run_cli

ROOT = Path(__file__).resolve().parents[2]
DEMO_INVENTORY = str(ROOT / "examples" / "inventory")


def complete(
    shell: str, words: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Ask the program for completions the way the shell script does (fish passes the
    incomplete word itself as COMP_CWORD, bash and zsh its index)."""
    argv = words.split(" ")
    cword = argv[-1] if shell == "fish" else str(len(argv) - 1)
    return subprocess.run(
        cli_argv(),
        env=cli_env(
            {"_HOSTBATCH_COMPLETE": f"{shell}_complete", "COMP_WORDS": words,
             "COMP_CWORD": cword, **(env or {})}
        ),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def bash_values(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if "," in line]


def test_host_names_complete_from_the_inventory() -> None:
    result = complete("bash", f"hostbatch run -i {DEMO_INVENTORY} -h web")
    assert sorted(bash_values(result)) == ["web01", "web02", "web03"]
    later = complete("bash", f"hostbatch run -i {DEMO_INVENTORY} -h web01,!d")
    assert sorted(bash_values(later)) == ["web01,!db01", "web01,!db02"]


def test_group_names_complete_for_g_and_at() -> None:
    groups = complete("bash", f"hostbatch put -i {DEMO_INVENTORY} -g ")
    assert sorted(bash_values(groups)) == ["db_servers", "web_clusters"]
    at = complete("zsh", f"hostbatch ping -i {DEMO_INVENTORY} -h @w")
    assert at.returncode == 0 and "@web_clusters" in at.stdout.splitlines()


def test_env_inventory_is_used_and_a_broken_one_completes_nothing(tmp_path: Path) -> None:
    env_result = complete("fish", "hostbatch run -h db", {"HOSTBATCH_INVENTORY": DEMO_INVENTORY})
    assert env_result.returncode == 0
    assert sorted(line.split(",", 1)[1] for line in env_result.stdout.splitlines()) == [
        "db01", "db02"
    ]  # fmt: skip
    broken = tmp_path / "bad.ini"
    broken.write_text("[web01\nhostname = x\n")
    result = complete("bash", f"hostbatch run -i {broken} -h w")
    assert result.returncode == 0
    assert bash_values(result) == []
    assert result.stderr == ""


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_script(shell: str) -> None:
    result = run_cli("completion", shell)
    assert result.returncode == 0, result.stderr
    assert f"_HOSTBATCH_COMPLETE={shell}_complete" in result.stdout.replace(
        "_HOSTBATCH_COMPLETE='", "_HOSTBATCH_COMPLETE="
    ).replace(f"{shell}_complete'", f"{shell}_complete")


def test_bash_accepts_the_script() -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    script = run_cli("completion", "bash").stdout
    result = subprocess.run(
        [bash, "-c", 'eval "$1"; complete -p hostbatch', "-", script],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "-F _hostbatch_completion" in result.stdout


def test_help_lists_topics_and_shows_each() -> None:
    listing = run_cli("help")
    assert listing.returncode == 0
    for name in TOPICS:
        assert re.search(rf"^  {re.escape(name)}\s", listing.stdout, re.MULTILINE)
        page = run_cli("help", name)
        assert page.returncode == 0 and page.stdout.strip() == TOPICS[name][1].strip()
    assert "deploy@10.0.0.5:2222" in run_cli("help", "patterns").stdout
    command = run_cli("help", "ping")
    assert command.returncode == 0 and "--icmp" in command.stdout


def test_unknown_topic_is_one_line_exit_2() -> None:
    result = run_cli("help", "colr")
    assert result.returncode == 2
    assert result.stderr == "hostbatch: error: no help topic 'colr'; did you mean 'color'?\n"


def _readme_table(heading: str) -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    rows: list[tuple[str, str]] = []
    for line in section.splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip().replace("\\|", "|").strip("`") for c in re.split(r"(?<!\\)\|", line)]
        if cells[1] not in ("code", "term", "---"):
            rows.append((cells[1], cells[2]))
    return rows


def test_inventory_page_names_every_key() -> None:
    page = TOPICS["inventory"][1]
    assert [key for key in sorted(HOST_KEYS) if key not in page] == []


def test_help_pages_agree_with_the_readme() -> None:
    assert _readme_table("### Exit codes") == [(str(c), t) for c, t in EXIT_CODES]
    assert _readme_table("## Selecting hosts") == list(SELECTION_TERMS)
    top = run_cli("--help").stdout
    for code, text in EXIT_CODES:
        assert f"{code:<4} {text}" in top
