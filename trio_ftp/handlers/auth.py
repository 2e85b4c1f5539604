"""USER, PASS, QUIT: who the client is, and leaving (RFC 959 §4.1.1)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import PurePosixPath

import trio

from ..base import ServerBase
from ..commands import command
from ..connection import Connection
from ..errors import ReplyError
from ..users import GetUserResponse, User
from ..validation import as_seconds

__all__ = ["AuthCommands"]


class AuthCommands(ServerBase):
    """Login and logout."""

    @contextlib.contextmanager
    def _user_manager_deadline(self) -> Iterator[None]:
        """Bound a user-manager call by its ``timeout``; a slow manager answers 421 and closes.

        Timeouts: ``user_manager.timeout`` (``None``: no limit).
        """
        timeout = self.user_manager.timeout
        if timeout is None:  # no limit: no cancel scope to pay for
            yield
            return
        with trio.move_on_after(as_seconds(timeout)) as scope:
            yield
        if scope.cancelled_caught:
            raise ReplyError("421", "user database not responding, closing connection", fatal=True)

    def _refuse_clear_login(self, connection: Connection) -> bool:
        """With ``tls_control_required``, no login (and no password) over a clear connection."""
        if self.tls_control_required and not connection.tls:
            connection.response("530", "TLS required on the control connection: use AUTH TLS")
            return True
        return False

    async def _logged_in(self, connection: Connection, user: User, reply: str) -> None:
        with self._user_manager_deadline():
            allowed = await self.user_manager.notify_login(user)
        if not allowed:
            name = user.login or "anonymous"
            raise ReplyError("421", f"too many connections for {name!r}", fatal=True)
        # Per-connection buckets live as long as the login: every limit level of this user.
        connection.read_throttle, connection.write_throttle = self.throttles.for_connection(user)
        connection.logged = True
        connection.current_directory = user.home_path
        connection.log.info("user %r logged in", connection.login_name)
        self.publish(connection, "login")
        connection.response("230", reply)

    @command("USER", help="USER <name>: say who you are", needs_argument=True, before_login=True)
    async def user(self, connection: Connection, rest: str) -> bool:
        if self._refuse_clear_login(connection):
            return True
        await self.forget_user(connection)
        connection.login_name = rest
        with self._user_manager_deadline():
            state, user, info = await self.user_manager.get_user(rest)
        if state is GetUserResponse.ERROR and user is not None:
            raise ReplyError("421", f"{info}, closing connection", fatal=True)
        if user is not None:
            connection.user = user
        if state is GetUserResponse.OK and user is not None:
            await self._logged_in(connection, user, info)
        else:
            # Known or not, every name gets the same 331 and the same PASS failure later:
            # the replies cannot be used to find out which accounts exist.
            connection.response("331", "password required")
        return True

    @command("PASS", help="PASS <password>: prove it", before_login=True)
    async def pass_(self, connection: Connection, rest: str) -> bool:
        if self._refuse_clear_login(connection):
            return True
        if connection.get("logged"):
            connection.response("230", "already logged in")
            return True
        if "login_name" not in connection:
            connection.response("503", "bad sequence of commands (use USER first)")
            return True
        # Every failure is answered at the same moment after the PASS arrived, whether the
        # user exists or not and however long checking took: nothing to time from outside.
        answer_at = trio.current_time() + (self.login_failure_delay or 0)
        host = connection.client_host
        if self.login_failures.blocked(host, trio.current_time()):
            await trio.sleep_until(answer_at)
            raise ReplyError("421", "too many failed logins from your address", fatal=True)
        user = connection.get("user")
        with self._user_manager_deadline():
            ok = user is not None and await self.user_manager.authenticate(user, rest)
        if ok:
            await self._logged_in(connection, user, "login successful")
            return True
        failures = connection.get("login_failures", 0) + 1
        connection.login_failures = failures
        self.login_failures.record(host, trio.current_time())
        connection.log.info("failed login for %r (%d)", connection.login_name, failures)
        self.publish(connection, "login_failed", path=None, target=connection.login_name)
        await trio.sleep_until(answer_at)  # trio.sleep: only this session waits
        limit = self.maximum_login_attempts
        if limit is not None and failures >= limit:
            raise ReplyError("421", "too many failed logins, closing connection", fatal=True)
        connection.response("530", "login incorrect")
        return True

    @command("ACCT", help="ACCT <account>: accounts are not used here", before_login=True)
    async def acct(self, connection: Connection, rest: str) -> bool:
        if connection.get("logged"):
            connection.response("202", "ACCT not needed, already logged in")
        else:
            connection.response("502", "accounts are not used; log in with USER and PASS")
        return True

    @command("REIN", help="REIN: log out and start over (the TLS state stays)")
    async def rein(self, connection: Connection, rest: str) -> bool:
        """RFC 959 §4.1.1: flush the account and session parameters, keep the connection.

        The control connection's TLS stays (RFC 4217 lets a server keep it); data
        protection returns to its start (``PROT C`` after AUTH, ``P`` with implicit TLS).
        """
        await connection.session.data.close()
        await self.forget_user(connection)
        for key in ("login_name", "rename_from", "mlst_facts", "hash_algorithm", "epsv_all"):
            connection.pop(key)
        connection.current_directory = PurePosixPath("/")
        connection.restart_offset = 0
        connection.transfer_type = "A"
        connection.prot = "P" if self.ssl is not None else "C"
        connection.response("220", "session reset, send USER")
        return True

    @command("QUIT", help="QUIT: end the session", before_login=True)
    async def quit(self, connection: Connection, rest: str) -> bool:
        connection.response("221", "goodbye")
        return False
