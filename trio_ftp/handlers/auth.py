"""USER, PASS, QUIT: who the client is, and leaving (RFC 959 §4.1.1)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from ..base import ServerBase
from ..boundaries import UserCodeFailed, call_user_code
from ..commands import command
from ..connection import Connection
from ..errors import ReplyError
from ..runtime import user_key
from ..users import GetUserResponse, User

__all__ = ["AuthCommands"]

T = TypeVar("T")


class AuthCommands(ServerBase):
    """Login and logout."""

    async def _ask_user_manager(
        self, connection: Connection, what: str, call: Callable[[], Awaitable[T]]
    ) -> T:
        """A user-manager call as a boundary: if it raises, ``451`` (logged with its
        traceback) and the session goes on, not logged in; if it overruns its time, ``421``
        and the session is closed (a user database that does not answer).

        Timeouts: :attr:`user_manager_timeout` (the manager's own, else
        ``callback_timeout``).
        """
        return await call_user_code(
            call,
            what=f"user manager {what}",
            seconds=self.user_manager_timeout,
            log=connection.log,
            failed=UserCodeFailed("451", "user database error, try again later"),
            timed_out=UserCodeFailed(
                "421", "user database not responding, closing connection", fatal=True
            ),
        )

    def _refuse_clear_login(self, connection: Connection) -> bool:
        """With ``tls_control_required``, no login (and no password) over a clear connection."""
        if self.options.tls.control_required and not connection.tls:
            connection.response("530", "TLS required on the control connection: use AUTH TLS")
            return True
        return False

    async def _logged_in(self, connection: Connection, user: User, reply: str) -> None:
        """Let ``user`` in: a slot of the user's ``maximum_connections`` in the state store
        (so the limit holds across workers and instances), then the user manager's word."""
        name = user.login or "anonymous"
        key = user_key(user.login)
        if not await self.runtime.take(connection.session_id, key, user.maximum_connections):
            self.publish(connection, "connection_refused", user=name, reason="user limit")
            raise ReplyError("421", f"too many connections for {name!r}", fatal=True)
        try:
            allowed = await self._ask_user_manager(
                connection,
                f"notify_login({user.login!r})",
                lambda: self.user_manager.notify_login(user),
            )
        except Exception:  # the session goes on (451) or ends (421): not as this user
            await self.runtime.give_back(connection.session_id, key)
            raise
        if not allowed:
            await self.runtime.give_back(connection.session_id, key)
            self.publish(connection, "connection_refused", user=name, reason="user limit")
            raise ReplyError("421", f"too many connections for {name!r}", fatal=True)
        # Per-connection buckets live as long as the login: every limit level of this user.
        connection.limit_by(self.throttles, user)
        connection.state.login_succeeded(user)
        self.publish(connection, "login")
        connection.response("230", reply)

    @command("USER", help="USER <name>: say who you are", needs_argument=True, before_login=True)
    async def user(self, connection: Connection, rest: str) -> bool:
        if self._refuse_clear_login(connection):
            return True
        await self.forget_user(connection)
        connection.state.user_given(rest, None)
        state, user, info = await self._ask_user_manager(
            connection, f"get_user({rest!r})", lambda: self.user_manager.get_user(rest)
        )
        if state is GetUserResponse.ERROR and user is not None:
            raise ReplyError("421", f"{info}, closing connection", fatal=True)
        connection.state.user_given(rest, user)
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
        if connection.logged:
            connection.response("230", "already logged in")
            return True
        if connection.login_name is None:
            connection.response("503", "bad sequence of commands (use USER first)")
            return True
        # Every failure is answered at the same moment after the PASS arrived, whether the
        # user exists or not and however long checking took: nothing to time from outside.
        answer_at = trio.current_time() + (self.options.login.failure_delay or 0)
        host = connection.client_host
        if await self.runtime.banned(host):
            self.publish(connection, "connection_refused", reason="address banned")
            await trio.sleep_until(answer_at)
            raise ReplyError("421", "too many failed logins from your address", fatal=True)
        user = connection.user
        try:
            ok = user is not None and await self._ask_user_manager(
                connection,
                f"authenticate({user.login!r})",
                lambda: self.user_manager.authenticate(user, rest),
            )
        except UserCodeFailed as exc:
            if not exc.fatal:  # answered when a failure would be: nothing to time
                await trio.sleep_until(answer_at)
            raise
        if ok and user is not None:
            await self._logged_in(connection, user, "login successful")
            return True
        failures = connection.state.login_failed()
        await self.runtime.login_failed(host)
        self.publish(
            connection, "login_failed", user=connection.login_name or "", failures=failures
        )
        await trio.sleep_until(answer_at)  # trio.sleep: only this session waits
        limit = self.options.login.failures_per_session
        if limit is not None and failures >= limit:
            raise ReplyError("421", "too many failed logins, closing connection", fatal=True)
        connection.response("530", "login incorrect")
        return True

    @command("ACCT", help="ACCT <account>: accounts are not used here", before_login=True)
    async def acct(self, connection: Connection, rest: str) -> bool:
        if connection.logged:
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
        await connection.data.close()
        await self.forget_user(connection)
        connection.state.reinitialized(implicit_tls=self.options.tls.implicit)
        connection.response("220", "session reset, send USER")
        return True

    @command("QUIT", help="QUIT: end the session", before_login=True)
    async def quit(self, connection: Connection, rest: str) -> bool:
        connection.response("221", "goodbye")
        return False
