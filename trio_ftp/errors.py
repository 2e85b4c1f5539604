"""The one error hierarchy of trio_ftp, and the one place that turns errors into replies.

Handlers raise; the session converts with :func:`reply_for`. Nothing in here does I/O.
Names follow aioftp where it has them (``PathIOError``, ``NoAvailablePort``,
``PathIsNotAbsolute``) so code catching them keeps working.
"""

from __future__ import annotations

import errno
import os

import trio

__all__ = [
    "AuthenticationFailed",
    "DataConnectionError",
    "FTPError",
    "LineTooLong",
    "NoAvailablePort",
    "PathIOError",
    "PathIsNotAbsolute",
    "PermissionDenied",
    "ProtocolError",
    "ReplyError",
    "TransferAborted",
    "reply_for",
]


class FTPError(Exception):
    """Base class of every error trio_ftp raises on purpose."""


class ReplyError(FTPError):
    """An error that already knows the FTP reply it becomes.

    Raise it from a command handler to answer ``code text`` and go on with the session, or,
    with ``fatal=True``, to answer and then close the session (e.g. ``421``).
    """

    def __init__(self, code: str, text: str, *, fatal: bool = False) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text
        self.fatal = fatal


class ProtocolError(ReplyError):
    """The client broke the protocol (bad framing, bad encoding, bad arguments)."""


class LineTooLong(ProtocolError):
    """A command line longer than the codec accepts: answered ``500``, then the close."""

    def __init__(self, limit: int) -> None:
        super().__init__("500", f"command line too long (limit {limit} bytes)", fatal=True)


class DataConnectionError(ReplyError):
    """No data connection could be had (``425``)."""

    def __init__(self, text: str = "can't open data connection") -> None:
        super().__init__("425", text)


class TransferAborted(ReplyError):
    """The data connection broke or was aborted mid-transfer (``426``); ``timed_out``:
    because no data moved for ``socket_timeout`` (the audit log tells them apart)."""

    def __init__(
        self, text: str = "connection closed; transfer aborted", *, timed_out: bool = False
    ) -> None:
        super().__init__("426", text)
        self.timed_out = timed_out


class PermissionDenied(ReplyError):
    """The user's permissions do not allow the operation (``550``)."""

    def __init__(self, text: str = "permission denied") -> None:
        super().__init__("550", text)


class AuthenticationFailed(ReplyError):
    """Login refused (``530``). Deprecated: the library never raises it (a refused
    ``PASS`` is answered ``530`` by the login handler); ``ReplyError("530", text)`` says
    the same."""

    def __init__(self, text: str = "login incorrect") -> None:
        super().__init__("530", text)


class PathIsNotAbsolute(FTPError, ValueError):
    """A virtual path that must be absolute (``User.home_path``) is not."""

    def __init__(self, path: object) -> None:
        super().__init__(f"home_path must be absolute, got {path!r}")


class NoAvailablePort(FTPError, OSError):
    """Every port of ``data_ports`` is in use."""


# errno -> (reply code, client-facing reason). Reasons never include server-side paths.
_ERRNO_REPLIES: dict[int, tuple[str, str]] = {
    errno.ENOENT: ("550", "no such file or directory"),
    errno.EEXIST: ("550", "file exists"),
    errno.ENOTDIR: ("550", "not a directory"),
    errno.EISDIR: ("550", "is a directory"),
    errno.ENOTEMPTY: ("550", "directory not empty"),
    errno.EACCES: ("550", "permission denied"),
    errno.EPERM: ("550", "operation not permitted"),
    errno.ELOOP: ("550", "too many levels of symbolic links"),
    errno.ENAMETOOLONG: ("553", "file name too long"),
    errno.EINVAL: ("553", "file name not allowed"),
    errno.ENOSPC: ("452", "insufficient storage space"),
    errno.EDQUOT: ("452", "disk quota exceeded"),
    errno.EROFS: ("550", "read-only file system"),
    errno.EXDEV: ("550", "cross-device rename not supported"),
}


class PathIOError(FTPError):
    """A path-IO backend failed; carries the reply the client should see.

    ``reason`` is the original exception (aioftp keeps ``sys.exc_info()`` there; we keep the
    exception itself). ``code``/``text`` are derived from its errno: ``550`` for "no such
    file"-like errors and any other permanent errno, ``452`` for a full disk, ``451`` for
    transient errnos (EAGAIN, EIO, ...), timeouts and exceptions that are not OS errors.
    """

    def __init__(self, reason: BaseException | None = None, text: str | None = None) -> None:
        self.reason = reason
        code, default_text = _classify(reason)
        self.code = code
        self.text = text if text is not None else default_text
        super().__init__(f"{self.code} {self.text}")


#: errno values worth trying again later: the only OS errors answered ``451`` (RFC 959:
#: "requested action aborted: local error in processing"). Any other errno not in
#: ``_ERRNO_REPLIES`` is a permanent refusal, ``550`` (``553`` where the verb's RFC 959
#: reply list has no 550, see :data:`_NO_550`).
_TRANSIENT_ERRNOS = frozenset(
    {errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.ETIMEDOUT, errno.EIO}
    | {errno.ENOMEM, errno.ENOBUFS, errno.ENFILE, errno.EMFILE, errno.ESTALE}
)
#: Verbs whose RFC 959 §5.4 reply list has 553 (name not allowed) but no 550.
_NO_550 = frozenset({"STOR", "STOU", "APPE", "RNTO"})


def _classify(reason: BaseException | None) -> tuple[str, str]:
    if isinstance(reason, OSError) and reason.errno in _ERRNO_REPLIES:
        return _ERRNO_REPLIES[reason.errno]
    if isinstance(reason, TimeoutError):
        return "451", "file system operation timed out"
    if isinstance(reason, OSError) and reason.errno is not None:
        if reason.errno in _TRANSIENT_ERRNOS:
            return "451", f"local error in processing ({os.strerror(reason.errno).lower()})"
        return "550", f"requested action not taken ({os.strerror(reason.errno).lower()})"
    return "451", "local error in processing"


def reply_for(exc: BaseException, verb: str | None = None) -> tuple[str, str]:
    """Return the ``(code, text)`` reply an exception raised by a handler becomes.

    ``verb`` (the command being answered) picks the code for an OS error the errno table
    does not name from that command's RFC 959 reply list: ``550``, or ``553`` for a verb
    that has no 550 (STOR, STOU, APPE, RNTO). A reply a handler chose
    (:class:`ReplyError`) is kept.
    """
    if isinstance(exc, ReplyError):
        return exc.code, exc.text
    if isinstance(exc, PathIOError):
        code, text = exc.code, exc.text
    elif isinstance(exc, (trio.BrokenResourceError, trio.ClosedResourceError)):
        return "426", "data connection lost; transfer aborted"
    elif isinstance(exc, OSError):
        code, text = _classify(exc)
    else:
        return "451", "local error in processing"
    reason = exc.reason if isinstance(exc, PathIOError) else exc
    unlisted = isinstance(reason, OSError) and reason.errno not in _ERRNO_REPLIES
    if unlisted and code == "550" and verb is not None and verb.upper() in _NO_550:
        code = "553"  # the table's own 550s (EACCES...) stay as clients know them
    return code, text
