"""The smallest useful server: one user with a password, one directory, plain FTP.

Serves the current directory (or the one given) to ``alice``/``wonderland``, read/write, and
to anonymous users read-only::

    python examples/minimal_server.py [DIRECTORY]
    curl ftp://alice:wonderland@127.0.0.1:2121/
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

import trio_ftp


def build_server(root: Path) -> trio_ftp.Server:
    """A server for ``root``: ``alice`` may write, anonymous may only read."""
    users = [
        trio_ftp.User("alice", "wonderland", base_path=root),
        trio_ftp.User(base_path=root, permissions=[trio_ftp.Permission("/", writable=False)]),
    ]
    return trio_ftp.Server(users, idle_timeout=300, socket_timeout=60)


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    server = build_server(root)
    print(f"serving {root} on ftp://127.0.0.1:2121/ (Ctrl-C to stop)")
    trio.run(server.run, "127.0.0.1", 2121)


if __name__ == "__main__":
    main()
