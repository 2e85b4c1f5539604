"""What the library itself keeps per session: typed fields and named transitions, no I/O.

Like h11's connection state, this is a plain object the session and the handlers change only
through the transitions below (``logged_in``, ``logged_out``, ``tls_started``...), each of
which says which fields move together and refuses a transition that makes no sense in the
current state with :class:`InvalidTransition` (a bug in the library or in a custom command,
never something a client can cause: handlers check the protocol's order and answer ``503``
before they call a transition). Plain field writes are fine for the fields that have no
rules (``transfer_type``, ``current_directory``...).

:class:`trio_ftp.Connection` is the aioftp-compatible view of this object for user code.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import trio

    from .datachannel import ActiveTarget, PassiveListener
    from .users import User

__all__ = [
    "InvalidTransition",
    "LoginState",
    "Protection",
    "SessionState",
    "TransferProgress",
    "TransferType",
]

#: ``TYPE A`` (ASCII, line ends converted) or ``TYPE I`` (binary, bytes as they are).
TransferType = Literal["A", "I"]
#: ``PROT C`` (clear data connections) or ``PROT P`` (TLS data connections).
Protection = Literal["C", "P"]

_ROOT = PurePosixPath("/")


@dataclass(slots=True)
class TransferProgress:
    """What ``STAT`` reports about the running transfer."""

    what: str
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)


class InvalidTransition(RuntimeError):
    """A transition that makes no sense in the session's current state (a bug, not a
    client's doing: the message names both)."""


class LoginState(enum.Enum):
    """Where the session is in RFC 959's login sequence."""

    #: No ``USER`` yet, or a ``USER`` that ``REIN`` or a logout forgot.
    ANONYMOUS = "no user"
    #: ``USER`` was accepted, waiting for ``PASS``.
    USER_GIVEN = "user given"
    #: Logged in: every command may run.
    LOGGED_IN = "logged in"


@dataclass(eq=False, slots=True)
class SessionState:
    """One session's protocol state; see the module docstring for the rules."""

    #: The session's number in logs and events (0: not a server's session).
    session_id: int = 0
    #: The client: the control connection's peer, or the source a trusted load balancer's
    #: PROXY header named (see :meth:`proxied`).
    client_host: str = ""
    client_port: int = 0
    server_host: str = ""
    server_port: int = 0
    #: The control connection's own peer (the load balancer's address behind one; else
    #: the same as ``client_host``/``client_port``).
    transport_host: str = ""
    transport_port: int = 0
    #: The address the client dialled: the PROXY header's destination, else the local one.
    dialled_host: str = ""
    dialled_port: int = 0

    login: LoginState = LoginState.ANONYMOUS
    #: The name the client gave with ``USER`` (kept after a failed ``PASS``).
    login_name: str | None = None
    #: The user the manager returned for ``login_name`` (None: unknown name, or none yet).
    user: User | None = None
    #: Failed ``PASS`` commands in this session.
    login_failures: int = 0
    #: True while this session holds the server's connection slots (taken at the greeting).
    acquired: bool = False
    #: The verb of the command being handled, or the last one handled (audit records and
    #: the live session list show it).
    command: str = ""

    current_directory: PurePosixPath = _ROOT
    transfer_type: TransferType = "A"
    #: ``REST`` offset (or ``RANG`` start) for the next transfer.
    restart_offset: int = 0
    #: ``RANG`` end byte (inclusive) for the next transfer, None without ``RANG``.
    restart_end: int | None = None
    #: The virtual path ``RNFR`` named; lives for exactly one command (``RNTO``).
    rename_from: PurePosixPath | None = None
    #: MLST facts chosen with ``OPTS MLST`` (None: the default set).
    mlst_facts: tuple[str, ...] | None = None
    #: Algorithm chosen with ``OPTS HASH`` (None: the server's default).
    hash_algorithm: str | None = None

    tls: bool = False
    prot: Protection = "C"
    #: ``PBSZ`` value once the client sent one (always 0 for TLS).
    pbsz: int | None = None
    #: After ``EPSV ALL`` only EPSV may set up data channels (RFC 2428 §4).
    epsv_all: bool = False

    #: The channel PASV/EPSV/PORT/EPRT set up for the next transfer.
    data_channel: PassiveListener | ActiveTarget | None = None
    #: A passive data connection accepted and not yet used by a transfer.
    data_connection: trio.abc.Stream | None = None
    #: What the running (or last) transfer has moved, for ``STAT``.
    transfer_progress: TransferProgress | None = None
    #: True while a ``worker`` transfer runs (it answers its own abort with ``426``/``226``).
    worker_active: bool = False

    # PROXY protocol ----------------------------------------------------------------------
    def proxied(self, source: tuple[str, int], destination: tuple[str, int] | None) -> None:
        """A trusted load balancer's PROXY header named the client (``source``) and the
        address it dialled: they replace the connection's own, which stay as the
        ``transport_*`` fields. Only before the greeting: nothing has read the client yet."""
        if self.acquired or self.login is not LoginState.ANONYMOUS:
            raise InvalidTransition("a PROXY header after the greeting")
        self.client_host, self.client_port = source
        if destination is not None:
            self.dialled_host, self.dialled_port = destination

    # login -------------------------------------------------------------------------------
    @property
    def logged_in(self) -> bool:
        """True once a login succeeded, until a logout."""
        return self.login is LoginState.LOGGED_IN

    def user_given(self, name: str, user: User | None) -> None:
        """``USER name``: the manager returned ``user`` (None for an unknown name)."""
        if self.login is LoginState.LOGGED_IN:
            raise InvalidTransition("USER while logged in: log out first")
        self.login = LoginState.USER_GIVEN
        self.login_name = name
        self.user = user

    def login_succeeded(self, user: User) -> None:
        """The user manager let ``user`` in: the session starts in the user's home."""
        if self.login is LoginState.LOGGED_IN:
            raise InvalidTransition("login while already logged in")
        if self.login_name is None:
            raise InvalidTransition("login without a USER")
        self.login = LoginState.LOGGED_IN
        self.user = user
        self.current_directory = user.home_path

    def login_failed(self) -> int:
        """A ``PASS`` was refused; the number of failures so far in this session."""
        if self.login is not LoginState.USER_GIVEN:
            raise InvalidTransition(f"a failed PASS in state {self.login.value!r}")
        self.login_failures += 1
        return self.login_failures

    def logged_out(self) -> tuple[User | None, bool]:
        """Forget the user (logout, a new ``USER``, the session's end): ``(user, was
        logged in)``. The name stays: only ``REIN`` forgets it."""
        user, was_logged_in = self.user, self.login is LoginState.LOGGED_IN
        self.user = None
        self.login = LoginState.USER_GIVEN if self.login_name is not None else LoginState.ANONYMOUS
        return user, was_logged_in

    def reinitialized(self, *, implicit_tls: bool) -> None:
        """``REIN`` (RFC 959 §4.1.1): back to the greeting's state, the control
        connection's TLS kept; the user must already be logged out."""
        if self.login is LoginState.LOGGED_IN:
            raise InvalidTransition("REIN before the logout")
        self.login = LoginState.ANONYMOUS
        self.login_name = None
        self.rename_from = None
        self.mlst_facts = None
        self.hash_algorithm = None
        self.epsv_all = False
        self.current_directory = _ROOT
        self.restart_offset = 0
        self.restart_end = None
        self.transfer_type = "A"
        self.prot = "P" if implicit_tls else "C"

    def logged_in_user(self) -> User:
        """The logged-in user, for code that runs only after a login.

        Raises:
            InvalidTransition: nobody is logged in (a handler without the login check).
        """
        if self.login is not LoginState.LOGGED_IN or self.user is None:
            raise InvalidTransition("a logged-in user is needed, and nobody is logged in")
        return self.user

    # TLS ---------------------------------------------------------------------------------
    def tls_started(self, *, implicit: bool) -> None:
        """The control connection is TLS now. After ``AUTH`` a new security exchange
        resets data protection (RFC 4217 §4); implicit TLS protects data from the start."""
        if self.tls:
            raise InvalidTransition("TLS started twice")
        self.tls = True
        self.pbsz = None
        self.prot = "P" if implicit else "C"

    def tls_stopped(self) -> None:
        """``CCC``: the control connection is clear again; data protection stays."""
        if not self.tls:
            raise InvalidTransition("CCC on a clear control connection")
        self.tls = False

    # restart and rename --------------------------------------------------------------------
    def restart_at(self, offset: int, end: int | None = None) -> None:
        """``REST offset`` (``end`` None) or ``RANG offset end``; replaces the previous one."""
        if offset < 0 or (end is not None and end < offset):
            raise InvalidTransition(f"restart range {offset}..{end}")
        self.restart_offset, self.restart_end = offset, end

    def take_range(self) -> tuple[int, int | None]:
        """Use up the pending ``REST``/``RANG``: ``(start, byte count or None for "to the
        end")``. Both hold until the next transfer (or ``HASH``) takes them."""
        start, end = self.restart_offset, self.restart_end
        self.restart_offset, self.restart_end = 0, None
        return start, None if end is None else end - start + 1

    def command_began(self, verb: str) -> None:
        """Before each command: a pending rename lives for exactly the next command, which
        must be ``RNTO`` (RFC 959 §4.1.3), so a refused ``RNFR`` (or anything in between)
        can never let a later ``RNTO`` move some other file."""
        self.command = verb
        if verb != "RNTO":
            self.rename_from = None

    def command_ended(self, verb: str) -> None:
        """After each command: ``RNTO`` used up the pending rename, whatever its outcome."""
        if verb == "RNTO":
            self.rename_from = None
