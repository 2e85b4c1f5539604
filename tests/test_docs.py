"""The documentation stays correct: the site builds with warnings as errors, and the
README's example runs."""

from __future__ import annotations

import ftplib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from conftest import in_thread

import trio_ftp

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_site_builds_without_warnings(tmp_path: Path) -> None:
    """``sphinx -W``: a broken cross-reference, a bad docstring or a page left out of the
    table of contents fails the build (offline: references into Python's and trio's docs
    need their inventories from the network, so they are left plain here)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "-q",
            "-b",
            "html",
            str(REPO / "docs"),
            str(tmp_path),
        ],
        env={**os.environ, "TRIO_FTP_DOCS_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    api = (tmp_path / "api.html").read_text()
    for name in trio_ftp.__all__:  # every public name has its entry
        assert f'id="trio_ftp.{name}"' in api or f'id="trio_ftp.pathio.{name}"' in api, name
    for name in trio_ftp.pathio.__all__:
        assert f'id="trio_ftp.pathio.{name}"' in api, name


async def test_the_readme_example_runs(tmp_path: Path, nursery: trio.Nursery) -> None:
    """The README's Python block, with its directory swapped for a temporary one: the
    server it builds serves alice."""
    readme = (REPO / "README.md").read_text()
    [block] = re.findall(r"```python\n(.*?)```", readme, re.S)
    calls: list[tuple[Any, ...]] = []
    namespace: dict[str, Any] = {}
    code = block.replace('"/srv/ftp"', repr(str(tmp_path)))
    real_run = trio.run
    trio.run = lambda *args: calls.append(args)  # type: ignore[assignment]
    try:
        exec(compile(code, "README.md", "exec"), namespace)
    finally:
        trio.run = real_run
    [(run, host, port)] = calls
    server = namespace["server"]
    assert run == server.run
    assert (host, port) == ("127.0.0.1", 2121)
    (tmp_path / "hello.txt").write_bytes(b"hi")
    _, bound = await nursery.start(server.serve, "127.0.0.1", 0)

    def fetch() -> list[str]:
        with ftplib.FTP(timeout=10) as ftp:
            ftp.connect("127.0.0.1", bound)
            ftp.login("alice", "wonderland")
            return ftp.nlst()

    assert await in_thread(fetch) == ["hello.txt"]
    await server.close()
