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
    fixtures = ["ftp_server", "ftps_server", "ftp_server_factory", "ftp_server_thread"]
    fixtures += ["ftps_server_thread", "ftp_server_thread_factory"]
    for name in fixtures:  # and every fixture of the pytest plugin
        assert f'id="trio_ftp.pytest_plugin.{name}"' in api, name


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


def _table_rows(page: str, heading: str | None = None) -> list[list[str]]:
    """The cells of the Markdown table rows in ``docs/<page>`` (under ``heading``)."""
    text = (REPO / "docs" / page).read_text()
    if heading is not None:
        text = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return _rows_of(text)


def _rows_of(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
            rows.append([cell.strip() for cell in cells])
    return rows


def test_the_command_reference_names_every_verb_and_its_feat_line() -> None:
    """docs/commands.md has a row for every verb the server answers, and its FEAT column
    names exactly the lines a real FEAT reply (with TLS) carries."""
    from trio_ftp.pytest_plugin import ThreadedFTPServer

    documented: dict[str, str] = {}
    no_verb = "## FEAT lines that name no verb"
    for cells in _table_rows("commands.md", no_verb)[1:]:
        documented[cells[0].strip("`")] = cells[0]
    text = (REPO / "docs" / "commands.md").read_text().split(no_verb)[0]
    for cells in _rows_of(text):
        verbs = re.findall(r"`([A-Z]{3,4})\b", cells[0])
        for verb in verbs:
            documented[verb] = cells[-1]
    server = trio_ftp.Server()
    assert set(server.command_specs) <= set(documented), set(server.command_specs) - set(documented)
    with ThreadedFTPServer(tls=True) as running, ftplib.FTP() as ftp:
        ftp.connect(running.host, running.port, timeout=10)
        feat = ftp.sendcmd("FEAT").splitlines()[1:-1]
    announced = {line.split()[0] for line in (entry.strip() for entry in feat)}
    in_docs = {
        name.split()[0]
        for cell in documented.values()
        for name in re.findall(r"`([A-Z][^`]*)`", cell)
    }
    assert announced == in_docs
    for spec in server.command_specs.values():  # a verb's own FEAT line is in its row
        if spec.feat:
            assert spec.feat in documented[spec.verb], spec.verb


def test_every_example_is_in_the_docs_and_tested() -> None:
    examples = sorted((REPO / "examples").glob("*.py"))
    page = (REPO / "docs" / "examples.md").read_text()
    tests = "".join(path.read_text() for path in (REPO / "tests").glob("test_*.py"))
    for example in examples:
        assert f"literalinclude}} ../examples/{example.name}" in page, example.name
        assert f'"{example.stem}"' in tests or example.name in tests, example.name


def test_the_pyftpdlib_guide_names_real_options() -> None:
    """Every ``Server`` keyword and command-line flag the pyftpdlib guide maps to exists."""
    import inspect

    keywords = set(inspect.signature(trio_ftp.Server).parameters)
    handler_rows = _table_rows("pyftpdlib.md", "## `FTPHandler` attributes")[1:]
    handler_rows += _table_rows("pyftpdlib.md", "## `FTPServer`")[1:]
    handler_rows += _table_rows("pyftpdlib.md", "## `ThrottledDTPHandler`")[1:]
    named = {
        word
        for cells in handler_rows
        for word in re.findall(r"`([a-z_]+)`", cells[1])
        if "_" in word
    }
    assert named, "no keywords found in the guide"
    assert named <= keywords, named - keywords
    help_text = subprocess.run(
        [sys.executable, "-m", "trio_ftp", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    flags = {
        flag
        for cells in _table_rows("pyftpdlib.md", "## `python -m pyftpdlib`")[1:]
        for flag in re.findall(r"(--[a-z-]+)", cells[1])
    }
    assert flags, "no flags found in the guide"
    for flag in flags:
        assert flag in help_text, flag
