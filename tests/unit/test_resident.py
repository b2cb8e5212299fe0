"""engine/resident.py's pure parts: which commands it takes, the line it sends, and the
markers taken out of a command's output however the bytes are split into chunks."""

from __future__ import annotations

import asyncio

import pytest

from hostbatch.engine.resident import Exchange, command_line, eligible, plain_words
from hostbatch.models import Stream

TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("command", "dash", "bash"),
    [
        ("true", True, True),
        ("echo 'a\nb'", True, True),
        ("echo $$", False, True),
        ("echo ${$}", False, True),
        ("cat <<EOF\nx\nEOF", False, True),
        ("echo a \\", False, True),
        ("echo a \\\n\n", False, True),
        ("printf 'a\0b'", False, False),
        ("echo $PPID", True, False),
        ("set -u; echo $BASHPID $BASH_COMMAND", True, True),
    ],
)
def test_eligible(command: str, dash: bool, bash: bool) -> None:
    assert eligible(command, "dash") is dash
    assert eligible(command, "bash") is bash
    assert eligible(command) is (dash or bash)  # before the login shell is known


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("true", True),
        ("df -h /", True),
        ("systemctl status nginx.service", True),
        ("if", False),
        ("fi", False),
        ("echo a; if", False),
        ("echo 'x'", False),
        ("", False),
    ],
)
def test_plain_words(command: str, expected: bool) -> None:
    assert plain_words(command) is expected


def test_command_line_is_one_line_and_quotes_everything() -> None:
    line = command_line(TOKEN, "echo 'it''s'\nfoo $HOME")
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert line == (
        f"hb_t={TOKEN} hb_v= hb_c='echo '\\''it'\\'''\\''s'\\'''\"$hb_n\"'foo $HOME'\n".encode()
    )
    assert b"hb_v=1 " in command_line(TOKEN, "uptime")


def _exchange_output(chunks: list[tuple[Stream, bytes]]) -> tuple[Exchange, dict[str, bytes]]:
    got: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

    async def feed() -> Exchange:
        exchange = Exchange(TOKEN, lambda stream, data: got[stream].extend(data))
        for stream, data in chunks:
            exchange.feed(stream, data)
        return exchange

    exchange = asyncio.run(feed())
    return exchange, {k: bytes(v) for k, v in got.items()}


OUT = b"no newline \x1e\x00\xff\x1e0123"  # the marker's first bytes, not the token
ERR = b"err\x1e"
STREAM: list[tuple[Stream, bytes]] = [
    ("stdout", OUT + b"\x1e" + TOKEN.encode() + b":7:K\n"),
    ("stderr", ERR + b"\x1e" + TOKEN.encode() + b"\n"),
]


@pytest.mark.parametrize("size", [1, 2, 5, 1000])
def test_markers_are_found_across_any_chunking(size: int) -> None:
    chunks: list[tuple[Stream, bytes]] = [
        (stream, data[i : i + size]) for stream, data in STREAM for i in range(0, len(data), size)
    ]
    exchange, got = _exchange_output(chunks)
    assert got == {"stdout": OUT, "stderr": ERR}
    assert exchange.done.is_set() and exchange.result() == (7, "K") and not exchange.extra


def test_output_after_the_marker_is_kept_and_flagged() -> None:
    exchange, got = _exchange_output([*STREAM, ("stdout", b"late")])
    assert got["stdout"] == OUT + b"late" and exchange.extra


def test_plain_output_is_passed_on_at_once() -> None:
    exchange, got = _exchange_output([("stdout", b"progress 10%\n"), ("stderr", b"warn")])
    assert got == {"stdout": b"progress 10%\n", "stderr": b"warn"}
    assert not exchange.done.is_set()
