"""A server with a custom SITE command, added by subclassing ``Server``.

Run it, then try ``SITE WHOAMI`` and ``SITE TIME`` from any FTP client::

    python examples/custom_site_command.py
    ftp -n 127.0.0.1 2121   # user anonymous, any password; then: quote SITE WHOAMI
"""

from __future__ import annotations

import time
from pathlib import Path

import trio

import trio_ftp


class SiteServer(trio_ftp.Server):
    """A server that also answers ``SITE WHOAMI`` and ``SITE TIME``."""

    @trio_ftp.command("SITE", help="SITE WHOAMI | SITE TIME: site-specific commands")
    @trio_ftp.ConnectionConditions(trio_ftp.ConnectionConditions.login_required)
    async def site(self, connection: trio_ftp.Connection, rest: str) -> bool:
        subcommand = rest.strip().upper()
        if subcommand == "WHOAMI":
            connection.response("200", connection.user.login or "anonymous")
        elif subcommand == "TIME":
            connection.response("200", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
        else:
            connection.response("501", f"unknown SITE command {subcommand!r}")
        return True


def main() -> None:
    users = [trio_ftp.User(base_path=Path("."), permissions=[trio_ftp.Permission(writable=False)])]
    server = SiteServer(users)
    print("serving . on 127.0.0.1:2121 (SITE WHOAMI, SITE TIME)")
    trio.run(server.run, "127.0.0.1", 2121)


if __name__ == "__main__":
    main()
