"""The aioftp-style condition decorators on custom commands: which reply a missing key gets,
in which order several keys are checked, and the checks of PathPermissions' arguments."""

from __future__ import annotations

from typing import Any

import pytest
from test_site_hash import connect, make_server

from trio_ftp import Server, command
from trio_ftp.conditions import ConnectionConditions, PathPermissions


class Custom(Server):
    @command("WHO", before_login=True)
    @ConnectionConditions(ConnectionConditions.login_required)
    async def who(self, connection: Any, rest: str) -> bool:
        connection.response("200", f"you are {connection.user.login}")
        return True

    @command("BOTH", before_login=True)
    @ConnectionConditions(ConnectionConditions.user_required, ConnectionConditions.login_required)
    async def both(self, connection: Any, rest: str) -> bool:
        connection.response("200", "both set")
        return True

    @command("TOLD", before_login=True)
    @ConnectionConditions(
        ConnectionConditions.rename_from_required, fail_code="550", fail_info="say RNFR first"
    )
    async def told(self, connection: Any, rest: str) -> bool:
        connection.response("200", "renaming")
        return True


async def session(nursery: Any) -> Any:
    return await connect(nursery, make_server(server_class=Custom), login=None)


async def test_missing_login_is_530_even_with_the_default_503(nursery):
    """RFC 959: 'not logged in' is 530, whatever the condition's default code (503)."""
    client = await session(nursery)
    assert await client.command("WHO") == ("530", ["bad sequence of commands (not logged in)"])
    assert await client.code("USER user") == "331"
    assert await client.code("PASS pw") == "230"
    assert await client.command("WHO") == ("200", ["you are user"])


async def test_keys_are_checked_in_order_and_the_first_missing_one_answers(nursery):
    client = await session(nursery)
    assert await client.command("BOTH") == (
        "503",
        ["bad sequence of commands (no user (use USER firstly))"],
    )
    assert await client.code("USER user") == "331"  # now 'user' is set, 'logged' not
    assert await client.command("BOTH") == ("530", ["bad sequence of commands (not logged in)"])
    assert await client.code("PASS pw") == "230"
    assert await client.command("BOTH") == ("200", ["both set"])


async def test_fail_code_and_info_are_the_callers(nursery):
    client = await session(nursery)
    assert await client.command("TOLD") == ("550", ["say RNFR first"])


def test_path_permissions_needs_known_permissions():
    with pytest.raises(ValueError, match="needs at least one"):
        PathPermissions()
    with pytest.raises(ValueError, match="unknown permission 'executable'"):
        PathPermissions(PathPermissions.readable, "executable")
