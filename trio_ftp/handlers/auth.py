"""USER, PASS, QUIT: who the client is, and leaving (RFC 959 §4.1.1)."""

from __future__ import annotations

import math

import trio

from ..base import ServerBase
from ..commands import command
from ..connection import Connection
from ..users import GetUserResponse

__all__ = ["AuthCommands"]


class AuthCommands(ServerBase):
    """Login and logout."""

    @command("USER", help="USER <name>: say who you are")
    async def user(self, connection: Connection, rest: str) -> bool:
        await self.forget_user(connection)
        connection.login_name = rest
        timeout = math.inf if self.user_manager.timeout is None else self.user_manager.timeout
        with trio.move_on_after(timeout):
            state, user, info = await self.user_manager.get_user(rest)
            if user is not None:
                connection.user = user
            if state is GetUserResponse.OK and user is not None:
                connection.logged = True
                connection.current_directory = user.home_path
                connection.log.info("user %r logged in", rest)
                connection.response("230", info)
            elif state is GetUserResponse.PASSWORD_REQUIRED:
                connection.response("331", info)
            else:
                connection.pop("login_name")
                connection.response("530", info)
            return True
        connection.log.warning("user manager timed out in get_user")
        connection.response("421", "user database not responding, closing connection")
        return False

    @command("PASS", help="PASS <password>: prove it")
    async def pass_(self, connection: Connection, rest: str) -> bool:
        if connection.get("logged"):
            connection.response("230", "already logged in")
            return True
        if "login_name" not in connection:
            connection.response("503", "bad sequence of commands (use USER first)")
            return True
        user = connection.get("user")
        timeout = math.inf if self.user_manager.timeout is None else self.user_manager.timeout
        with trio.move_on_after(timeout):
            ok = user is not None and await self.user_manager.authenticate(user, rest)
            if ok:
                connection.logged = True
                connection.current_directory = user.home_path
                connection.log.info("user %r logged in", connection.login_name)
                connection.response("230", "login successful")
            else:
                connection.log.info("failed login for %r", connection.login_name)
                connection.response("530", "login incorrect")
            return True
        connection.log.warning("user manager timed out in authenticate")
        connection.response("421", "user database not responding, closing connection")
        return False

    @command("QUIT", help="QUIT: end the session")
    async def quit(self, connection: Connection, rest: str) -> bool:
        connection.response("221", "goodbye")
        return False
