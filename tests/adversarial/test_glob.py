"""No glob expansion (issue "Hardening"): ``*``, ``?``, ``[...]``, ``{...}`` and ``~`` in a
path are ordinary characters. A pattern that would backtrack for ever in a glob matcher is
answered at once with "not found", and a file literally named ``*`` is that file only.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
from conftest import LOGIN, Running
from wire import (
    logged_in,
    start_server,  # noqa: F401 (the fixture: wraps conftest's)
    transfer,
)

#: A pattern whose matching against ``a...a`` names takes exponential time by backtracking.
EVIL = "*a" * 25 + "*b"
PATTERNS = [
    EVIL,
    "*",
    "a*",
    "*a",
    "?",
    "a?",
    "??",
    "[a-z]",
    "[a-z]*",
    "[!b]*",
    "{a,aa}",
    "a{a,b}",
    "{a,b}*",
    "~",
    "~/a",
    "~root",
    "~" + LOGIN,
    ".*",
    "*/a",
    "a/*",
]
#: Path commands answered on the control connection, and the ones that use a data one.
CONTROL = ["STAT", "DELE", "SIZE", "MDTM", "MLST", "CWD", "HASH", "RNFR", "RMD"]
DATA = ["LIST", "NLST", "MLSD", "RETR"]
#: Seconds any one of these may take: a glob expander would take far longer on EVIL.
AT_ONCE = 0.5
MANY = 200


def many_names() -> list[str]:
    """``a``, ``aa``, ... up to 200 ``a``: what EVIL backtracks on."""
    return ["a" * length for length in range(1, MANY + 1)]


async def test_wildcards_are_answered_at_once_with_not_found(
    start_server: Callable[..., Awaitable[Running]], root: Path
) -> None:
    """Wildcards (a backtracking one too) are answered at once with not-found; nothing matches."""
    many = root / "many"
    many.mkdir()
    for name in many_names():
        (many / name).write_bytes(name.encode())
    running = await start_server()
    wire = await logged_in(running.host, running.port, kind="I")
    slow: list[tuple[str, float]] = []
    found: list[tuple[str, bytes]] = []
    try:
        assert (await wire.command("CWD many")).startswith(b"250")
        for pattern in PATTERNS:
            for verb in CONTROL + DATA:
                line = f"{verb} {pattern}"
                start = trio.current_time()
                if verb in DATA:
                    reply, data = await transfer(wire, line)
                else:
                    reply, data = await wire.command(line), b""
                elapsed = trio.current_time() - start
                if elapsed >= AT_ONCE:
                    slow.append((line, elapsed))
                if reply[:3] not in (b"450", b"550") or data:
                    found.append((line, reply + data[:200]))
                assert (await wire.command("PWD")).startswith(b'257 "/many"'), line
    finally:
        await wire.aclose()
    assert not slow, f"not answered at once: {slow}"
    assert not found, f"wildcards were expanded or matched: {found}"
    assert sorted(os.listdir(many)) == sorted(many_names())


async def test_a_file_named_star_is_only_itself(
    start_server: Callable[..., Awaitable[Running]], root: Path
) -> None:
    """A file named *, ?, [a], {a,b} or ~ is served and deleted by its literal name only."""
    contents = {
        "*": b"star",
        "?": b"question mark",
        "[a]": b"brackets around a",
        "{a,b}": b"braces with a comma",
        "~": b"tilde, the whole name",
        "a": b"plain a, the one [a] and ? would match",
        "b": b"plain b, the other brace alternative",
        "ab": b"two letters, what * and ?? would match",
    }
    for name, content in contents.items():
        (root / name).write_bytes(content)
    running = await start_server()
    wire = await logged_in(running.host, running.port, kind="I")
    try:
        for name, content in contents.items():
            reply, data = await transfer(wire, f"RETR {name}")
            assert reply.startswith(b"226"), (name, reply)
            assert data == content, name
            assert await wire.command(f"SIZE {name}") == f"213 {len(content)}\r\n".encode()
        reply, data = await transfer(wire, "NLST *")
        assert reply.startswith(b"226"), reply
        assert data == b"*\r\n"
        reply, data = await transfer(wire, "NLST ?")
        assert data == b"?\r\n", reply
        remaining = set(contents)
        for name in ("*", "?", "[a]", "{a,b}", "~"):
            assert (await wire.command(f"DELE {name}")).startswith(b"250"), name
            remaining.discard(name)
            assert set(os.listdir(root)) == remaining, name
            again = await wire.command(f"DELE {name}")
            assert again[:3] == b"550", (name, again)  # gone: nothing else answers to it
    finally:
        await wire.aclose()
    for name in remaining:
        assert (root / name).read_bytes() == contents[name]
