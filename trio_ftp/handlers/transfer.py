"""RETR, STOR, APPE, REST, LIST, NLST, MLSD, TYPE, ABOR: moving bytes over data channels.

Each transfer handler checks everything it can inline (so errors are answered in order),
queues ``150`` and hands a ``@worker`` to ``connection.start_transfer``; the worker takes the
data connection (``425`` if none comes in ``wait_future_timeout``), moves the bytes under
``socket_timeout`` per socket operation, closes the data stream and only then queues ``226``.
"""

from __future__ import annotations

import errno
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath
from stat import S_ISDIR, S_ISGID, S_ISREG, S_ISUID, S_ISVTX
from typing import Any

import trio

from ..ascii import FromNetwork, ToNetwork
from ..base import THROTTLE_BURST, ServerBase
from ..commands import command
from ..conditions import ConnectionConditions, H, PathConditions, PathPermissions, worker
from ..connection import Connection
from ..errors import DataConnectionError, FTPError, PathIOError, ReplyError, TransferAborted
from ..events import EventKind, TransferOutcome
from ..fastpath import KernelCopyUnsupported, StallClock, receive_into_file, send_file
from ..listing import list_lines, mlsx_line, mlsx_lines, perm_fact
from ..state import TransferType
from ..throttle import Throttle
from .dataio import (
    KERNEL_CHUNK,
    KERNEL_MINIMUM,
    TransferProgress,
    close_data,
    kernel_copy,
    kernel_fd,
    next_size,
    receive_block,
    send_data,
    socket_timeout,
)
from .files import chosen_facts, facts_line

__all__ = ["TransferCommands", "strip_list_options", "transfer_outcome"]

_login = ConnectionConditions(ConnectionConditions.login_required)
_data_channel = ConnectionConditions(
    ConnectionConditions.data_channel_ready,
    fail_code="425",  # RFC 959 §5.4: the transfer commands' replies have 425, not 503
    fail_info="no data connection: use PASV, EPSV, PORT or EPRT first",
)


def _passive(handler: H) -> H:
    """Login required (530), then a data channel set up (425)."""
    return _login(_data_channel(handler))


_exists = PathConditions.path_must_exists
_STOU_ATTEMPTS = 100
#: The smallest read of a download on the Python path (files shorter than a block).
_MIN_READ = 64 * 1024
#: Uploads shorter than this are received before their file is opened, and written in one
#: backend call (open, write, close: one worker-thread call instead of three).
SMALL_UPLOAD = 256 * 1024
#: Seconds to remove a failed atomic upload's temporary file (even while cancelled).
_CLEANUP_TIMEOUT = 10
_DIRECTIONS = {"RETR": "download", "STOR": "upload", "APPE": "upload", "STOU": "upload"}
_TYPES: dict[str, TransferType] = {"A": "A", "A N": "A", "I": "I", "L 8": "I", "L8": "I"}


def transfer_outcome(exc: BaseException, *, aborted: bool, shutdown: bool) -> TransferOutcome:
    """The outcome of a transfer that raised ``exc``: cancelled by ``ABOR`` (``aborted``)
    or by the server's close (``shutdown``), else by the session's end (``closed``); a data
    connection that timed out, broke or never came; a file-system failure."""
    if isinstance(exc, trio.Cancelled):
        return "aborted" if aborted else "shutdown" if shutdown else "closed"
    if isinstance(exc, TransferAborted):
        return "timeout" if exc.timed_out else "closed"
    if isinstance(exc, DataConnectionError):
        return "refused"
    if isinstance(exc, (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError)):
        return "closed"
    return "failed"


def strip_list_options(argument: str) -> str:
    """Drop ``ls``-style options (``-a``, ``-la``...) that clients put before a LIST path."""
    words = argument.split(" ")
    while words and words[0].startswith("-") and len(words[0]) > 1:
        words.pop(0)
    return " ".join(words).strip() if words != [""] else ""


async def _reserve(connection: Connection, real: Any) -> bool:
    """Create ``real`` empty if, and only if, it does not exist (``O_EXCL``): STOU's name
    is then this session's, whatever other sessions do before the data arrives."""
    try:
        async with connection.path_io.open(real, mode="xb"):
            pass
    except PathIOError as exc:
        if isinstance(exc.reason, FileExistsError):
            return False
        raise
    return True


#: setuid, setgid, sticky: an atomic upload never carries them over unless permitted.
_SPECIAL_MODE_BITS = S_ISUID | S_ISGID | S_ISVTX


async def _chmod_if_supported(connection: Connection, real: Any, mode: int) -> None:
    """Give an atomic upload the permission bits of the file it replaces (backends without
    ``chmod`` keep their own)."""
    try:
        await connection.path_io.chmod(real, mode)
    except PathIOError as exc:
        if not isinstance(exc.reason, NotImplementedError):
            raise


def _refuse_ascii_offset(connection: Connection, offset: int) -> None:
    """A REST/RANG offset counts bytes of the file; in TYPE A the stream differs from the
    file (CRLF), so resuming would corrupt it: ``504`` before any ``150`` (TYPE A may have
    been set after the REST)."""
    if offset and connection.transfer_type == "A":
        raise ReplyError("504", "restart offsets are not supported in ASCII mode (TYPE A)")


class TransferCommands(ServerBase):
    """Transfers and their parameters."""

    # parameters ------------------------------------------------------------------------------
    @command("TYPE", help="TYPE A|I: ASCII or binary", needs_argument=True)
    async def type(self, connection: Connection, rest: str) -> bool:
        kind = _TYPES.get(" ".join(rest.upper().split()))
        if kind is None:
            connection.response("504", f"type {rest!r} not supported (use A or I)")
            return True
        connection.transfer_type = kind
        connection.response("200", f"type set to {kind}")
        return True

    @command(
        "REST",
        help="REST <offset>: resume the next transfer at offset",
        feat="REST STREAM",
        needs_argument=True,
    )
    @_login
    async def rest(self, connection: Connection, rest: str) -> bool:
        """A nonzero offset is refused in TYPE A (``504``, as pyftpdlib does): it would
        seek the file, not the converted stream the client counted, and corrupt a resumed
        download. ``REST 0`` stays allowed (clients send it to probe for REST)."""
        if not rest.isdigit():
            connection.response("501", "REST needs a non-negative integer offset")
            return True
        _refuse_ascii_offset(connection, int(rest))
        connection.state.restart_at(int(rest))  # REST replaces a RANG
        connection.response("350", f"restarting at {int(rest)}, send the transfer command")
        return True

    @command(
        "RANG",
        help="RANG <start> <end>: the next RETR or HASH covers bytes start..end (inclusive)",
        feat="RANG STREAM",
        needs_argument=True,
    )
    @_login
    async def rang(self, connection: Connection, rest: str) -> bool:
        """draft-bryan-ftp-range: ``RANG 1 0`` clears; REST and RANG replace each other."""
        words = rest.split()
        if len(words) != 2 or not all(word.isdigit() for word in words):
            connection.response("501", "syntax: RANG <start> <end>")
            return True
        start, end = int(words[0]), int(words[1])
        if (start, end) == (1, 0):
            connection.state.restart_at(0)
            connection.response("350", "range cleared")
        elif end < start:
            connection.response("501", "RANG end is before its start")
        else:
            connection.state.restart_at(start, end)
            connection.response("350", f"restarting at {start}, ending byte at {end}")
        return True

    @command("ABOR", help="ABOR: abort the running transfer", immediate=True)
    async def abor(self, connection: Connection, rest: str) -> bool:
        """RFC 959 §4.1.3: a running transfer ends with ``426`` then ``226``; with nothing
        to abort, ``226`` alone (aioftp's ``Client.abort()`` accepts nothing else). Either
        way the data channel (a PASV listener, a connection not yet used) is closed."""
        if connection.control.transfer_running:
            had_worker = connection.worker_active
            await connection.control.abort_transfer()
            if not had_worker:
                connection.response("226", "abort successful")
        else:
            connection.response("226", "nothing to abort")
        await connection.data.close()
        return True

    def _outcome(self, connection: Connection, exc: BaseException) -> TransferOutcome:
        """How a transfer that raised ``exc`` ended (see :data:`TransferOutcome`)."""
        return transfer_outcome(
            exc, aborted=connection.control.transfer_aborted, shutdown=self.closing
        )

    def _block_size(self, throttle: Throttle) -> int:
        """Bytes per block on the Python path: ``block_size``, cut to the throttle's burst
        when a speed limit applies, so a limited transfer moves evenly."""
        if throttle.current_rate() is None:
            return self.options.limits.block_size
        return min(self.options.limits.block_size, THROTTLE_BURST)

    def _take_offset(self, connection: Connection) -> int:
        """The REST offset for an upload; a RANG is refused for uploads (ReplyError 503),
        an offset in TYPE A too (504)."""
        offset, limit = connection.state.take_range()
        if limit is not None:
            raise ReplyError("503", "RANG applies to RETR and HASH only")
        _refuse_ascii_offset(connection, offset)
        return offset

    def _start(
        self,
        connection: Connection,
        what: str,
        job: Callable[[trio.abc.Stream, TransferProgress], Awaitable[None]],
        opening: str | None = None,
        *,
        offset: int = 0,
    ) -> None:
        """Queue ``150`` and start ``job`` as the session's abortable transfer. However the
        transfer ends, one audit record says so (``transfer_finished`` or
        ``transfer_aborted`` with its outcome, bytes moved and duration)."""
        progress = TransferProgress(what)
        verb, _, path = what.partition(" ")
        direction = _DIRECTIONS.get(verb, "listing")

        def publish(kind: EventKind, outcome: TransferOutcome | None = None) -> None:
            seconds = time.monotonic() - progress.started
            self.publish(
                connection,
                kind,
                path=path or None,
                direction=direction,
                bytes=progress.bytes,
                seconds=seconds,
                offset=offset or None,
                outcome=outcome,
            )

        if self.options.tls.data_required and connection.prot != "P":
            connection.response("521", "data connections must be protected: use PROT P")
            publish("transfer_aborted", "refused")
            return

        @worker
        async def transfer(server: ServerBase, connection: Connection) -> None:
            connection.transfer_progress = progress
            try:
                stream = await connection.data.take_stream()
            except BaseException as exc:
                publish("transfer_aborted", self._outcome(connection, exc))
                raise
            publish("transfer_started")
            try:
                await job(stream, progress)
                await close_data(connection, stream)  # may wait for the client: abortable
            except BaseException as exc:
                # Recorded first: under cancellation the close below raises Cancelled.
                publish("transfer_aborted", self._outcome(connection, exc))
                await trio.aclose_forcefully(stream)
                raise
            publish("transfer_finished", "complete")
            connection.response("226", "transfer complete")

        connection.response("150", opening or f"opening data connection for {what}")
        connection.start_transfer(transfer, self, connection)

    @command(
        "STAT",
        help="STAT [<path>]: session status, or a listing on this connection",
        immediate=True,
        before_login=True,
    )
    async def stat(self, connection: Connection, rest: str) -> bool:
        """RFC 959 §4.1.3: without argument, the session's status (also mid-transfer);
        with a path, its ``ls -l`` listing over the control connection (``213``)."""
        if rest.strip():
            if not connection.logged:
                connection.response("530", "not logged in")
                return True
            lines = await self.listing_lines(connection, rest)
            if lines is not None:
                connection.response("213", [f"status of {rest.strip()}:", *lines, "end of status"])
            return True
        connection.response("211", ["trio_ftp status:", *self.status_lines(connection), "end"])
        return True

    def status_lines(self, connection: Connection) -> list[str]:
        """What ``STAT`` without argument says about the session."""
        user = connection.user
        lines = [f"connected to {connection.client_host}:{connection.client_port}"]
        if connection.logged and user is not None:
            lines.append(f"logged in as {user.login or 'anonymous'}")
        else:
            lines.append("not logged in")
        kind = "ASCII" if connection.transfer_type == "A" else "binary"
        lines.append(f"TYPE: {kind}; STRUcture: File; MODE: Stream")
        protection = "private (TLS)" if connection.prot == "P" else "clear"
        control = "TLS" if connection.tls else "clear"
        lines.append(f"control connection: {control}; data protection: {protection}")
        progress = connection.transfer_progress
        if connection.control.transfer_running and progress is not None:
            lines.append(f"transfer in progress: {progress.what}, {progress.bytes} bytes so far")
        else:
            lines.append("no transfer in progress")
        return lines

    # files -----------------------------------------------------------------------------------
    @command("RETR", help="RETR <file>: download", needs_argument=True)
    @_passive
    @PathConditions(_exists, PathConditions.path_must_be_file)
    @PathPermissions(PathPermissions.readable)
    async def retr(self, connection: Connection, rest: str) -> bool:
        real, virtual = await self.get_paths(connection, rest)
        offset, limit = connection.state.take_range()  # REST, or RANG start..end
        _refuse_ascii_offset(connection, offset)
        info = await connection.path_io.stat(real)
        if not S_ISREG(info.st_mode):  # a FIFO or device, whatever the backend's is_file said
            connection.response("550", "path is not a file")
            return True
        size = info.st_size
        if offset > size:
            connection.response("554", f"restart offset {offset} is past the end ({size})")
            return True

        ascii_mode = connection.transfer_type == "A"
        length = size - offset if limit is None else min(size - offset, limit)
        small = length < KERNEL_MINIMUM

        async def job(stream: trio.abc.Stream, progress: TransferProgress) -> None:
            to_network = ToNetwork() if ascii_mode else None  # RFC 959 §3.1.1.1: CRLF on the wire
            async with connection.path_io.open(real, mode="rb") as file:
                fd = None if ascii_mode or small else kernel_fd(connection, stream, file)
                if fd is not None:
                    assert isinstance(stream, trio.SocketStream)
                    # Unthrottled chunks through the kernel; a limit switched on meanwhile
                    # sends the rest through the throttled path below.
                    clock = StallClock(socket_timeout(connection), progress)
                    try:
                        while connection.write_throttle.current_rate() is None:
                            wanted = next_size(KERNEL_CHUNK, limit, progress.bytes)
                            _, ended = await kernel_copy(  # progress counts as it goes
                                self.kernel_copy_threads,
                                clock,
                                send_file,
                                stream.socket.fileno(),
                                fd,
                                offset + progress.bytes,
                                wanted,
                            )
                            if ended or progress.bytes == limit:  # the file's end, or RANG's
                                return
                    except KernelCopyUnsupported as exc:
                        # Some FUSE, 9p and network file systems: the rest goes through
                        # the Python path below, from the byte sendfile stopped at.
                        connection.log.info("%s; sending through Python", exc)
                if progress.bytes or offset:
                    await file.seek(offset + progress.bytes)
                # No bigger than the file (as it was at RETR) needs: a small file's read
                # should not allocate a whole block.
                size = min(self._block_size(connection.write_throttle), max(length, _MIN_READ))
                while block := await file.read(next_size(size, limit, progress.bytes)):
                    progress.bytes += len(block)
                    if to_network is not None:
                        block = to_network.convert(block)
                    await send_data(connection, stream, block)

        self._start(connection, f"RETR {virtual}", job, offset=offset)
        return True

    async def _store(self, connection: Connection, rest: str, append: bool) -> bool:
        real, virtual = await self.get_paths(connection, rest)
        offset = self._take_offset(connection)
        if append and offset:
            connection.response("503", "REST and APPE can't be combined (use REST + STOR)")
            return True
        if (append or offset) and not connection.path_io.capabilities().write_at_offset:
            # An object store writes whole objects: nothing can be added to one.
            verb = "APPE" if append else "REST + STOR"
            connection.response(
                "550", f"{verb} is not supported by this storage: upload the whole file with STOR"
            )
            return True
        if await connection.path_io.is_dir(real):
            connection.response("553", "path is a directory")  # RFC 959 §5.4: STOR has no 550
            return True
        if not await connection.path_io.is_dir(real.parent):
            connection.response("553", "no such directory")  # before 150, not after it
            return True
        if await connection.path_io.exists(real) and not await connection.path_io.is_file(real):
            # A FIFO, device or socket is never written or replaced (atomic uploads rename
            # over the target); the open refuses it too, should one be swapped in later.
            connection.response("550", "not a regular file")
            return True
        if offset:
            if not await connection.path_io.exists(real):
                connection.response("554", "can't resume: the file does not exist")
                return True
            size = (await connection.path_io.stat(real)).st_size
            if offset > size:
                connection.response("554", f"restart offset {offset} is past the end ({size})")
                return True
            mode = "r+b"
        else:
            mode = "ab" if append else "wb"
        keep_mode = None
        if self._atomic(connection, mode) and await connection.path_io.exists(real):
            keep_mode = (await connection.path_io.stat(real)).st_mode & 0o7777
            if (
                not self.options.files.permit_special_mode_bits
            ):  # never carried over (vsftpd's chmod mask)
                keep_mode &= ~_SPECIAL_MODE_BITS

        self._receive_file(
            connection,
            real,
            mode,
            offset,
            f"{'APPE' if append else 'STOR'} {virtual}",
            keep_mode=keep_mode,
        )
        return True

    def _atomic(self, connection: Connection, mode: str) -> bool:
        """Whether an upload opened with ``mode`` goes through a temporary name: with
        ``atomic_uploads``, for a fresh upload, unless the backend only ever shows whole
        files anyway (an object store)."""
        return (
            self.options.files.atomic_uploads
            and mode == "wb"
            and not connection.path_io.capabilities().whole_file_writes
        )

    def _receive_file(
        self,
        connection: Connection,
        real: Any,
        mode: str,
        offset: int,
        what: str,
        opening: str | None = None,
        *,
        keep_mode: int | None = None,
        reserved: bool = False,
    ) -> None:
        """Start an upload into ``real`` (opened with ``mode``, written from ``offset``).

        With ``atomic_uploads`` a fresh upload (mode ``wb``) goes to a hidden temporary
        name beside ``real``, renamed over it only after the last byte arrived and removed
        on any failure, so ``real`` holds either its old contents or the whole new file.
        ``keep_mode``: the permission bits of the file being replaced, given to the new one.
        ``reserved``: ``real`` is an empty placeholder this command created (STOU), removed
        too when an atomic upload fails.
        """

        ascii_mode = connection.transfer_type == "A"
        atomic = self._atomic(connection, mode)
        # A short name: the temporary must fit wherever the target's name fits.
        written = real.with_name(f".upload-{secrets.token_hex(6)}") if atomic else real

        async def receive_kept(
            stream: trio.abc.Stream,
            progress: TransferProgress,
            size: int,
            from_network: FromNetwork | None,
            keep: Callable[[bytes], Awaitable[object]],
            *,
            keep_nothing: bool = False,
        ) -> bytes:
            """:func:`receive_block`; when it fails mid-block (a timeout, a reset, ABOR, a
            TLS end without ``close_notify``), what arrived is written by ``keep`` first (and
            nothing when nothing arrived, unless ``keep_nothing``), as if written as it came:
            the file holds every byte received, and a client may resume from there. Even
            while the transfer is cancelled, within ``_CLEANUP_TIMEOUT``. An atomic upload
            keeps nothing: its temporary file is removed anyway."""
            arrived = bytearray()
            try:
                return await receive_block(
                    connection,
                    stream,
                    size,
                    progress,
                    strict_eof=self.options.tls.strict_eof,
                    into=arrived,
                )
            except BaseException:
                if not atomic and (arrived or keep_nothing):
                    data = bytes(arrived)
                    if from_network is not None:
                        data = from_network.convert(data)
                    with trio.CancelScope(shield=True), trio.move_on_after(_CLEANUP_TIMEOUT):
                        try:
                            await keep(data)
                        except FTPError as exc:
                            connection.log.warning("could not keep the partial upload: %s", exc)
                raise

        async def receive(stream: trio.abc.Stream, progress: TransferProgress) -> None:
            from_network = FromNetwork() if ascii_mode else None  # CRLF on the wire -> LF
            first = b""
            if mode in ("wb", "ab"):
                # A small upload whole, before the file is opened: then one backend call
                # (the local one: one worker thread) opens, writes and closes it.
                received = await receive_kept(
                    stream,
                    progress,
                    SMALL_UPLOAD,
                    from_network,
                    lambda data: connection.path_io.write_file(written, data, mode),
                    keep_nothing=True,  # the file is made, as the open did before
                )
                first = received if from_network is None else from_network.convert(received)
                if len(received) < SMALL_UPLOAD:  # a short block: the upload ended
                    if from_network is not None:
                        first += from_network.flush()
                    await connection.path_io.write_file(written, first, mode)
                    return
            async with connection.path_io.open(written, mode=mode) as file:
                if offset:
                    await file.seek(offset)
                fd = None if ascii_mode else kernel_fd(connection, stream, file)
                if first:  # the start of a bigger upload
                    await file.write(first)
                    if fd is not None:  # the kernel writes below the file's buffer: flush it
                        await file.seek(0, os.SEEK_END)
                if fd is not None:
                    assert isinstance(stream, trio.SocketStream)
                    start = None if mode == "ab" else offset  # None: the kernel appends
                    clock = StallClock(socket_timeout(connection), progress)
                    told = False
                    while connection.read_throttle.current_rate() is None:
                        _, ended = await kernel_copy(  # progress counts as it goes
                            self.kernel_copy_threads,
                            clock,
                            receive_into_file,
                            stream.socket.fileno(),
                            fd,
                            None if start is None else start + progress.bytes,
                            KERNEL_CHUNK,
                        )
                        if clock.splice_refused is not None and not told:
                            told = True  # said once per transfer
                            connection.log.info(
                                "splice refused here (%s); receiving through recv and pwrite",
                                errno.errorcode.get(clock.splice_refused, clock.splice_refused),
                            )
                        if ended:
                            return
                    if start is not None:  # the kernel wrote at explicit offsets
                        await file.seek(start + progress.bytes)
                # Network reads (a TLS record each) are gathered into blocks: one write, one
                # worker-thread call, per block.
                size = self._block_size(connection.read_throttle)
                while True:
                    block = await receive_kept(stream, progress, size, from_network, file.write)
                    data = block if from_network is None else from_network.convert(block)
                    if data:
                        await file.write(data)
                    if len(block) < size:  # a short block: the upload ended
                        break
                if from_network is not None and (tail := from_network.flush()):
                    await file.write(tail)

        async def job(stream: trio.abc.Stream, progress: TransferProgress) -> None:
            if not atomic:
                await receive(stream, progress)
                return
            try:
                await receive(stream, progress)
                if keep_mode is not None:
                    await _chmod_if_supported(connection, written, keep_mode)
                await connection.path_io.rename(written, real)
            except BaseException:
                with trio.CancelScope(shield=True), trio.move_on_after(_CLEANUP_TIMEOUT):
                    for leftover in (written, real) if reserved else (written,):
                        try:
                            await connection.path_io.unlink(leftover)
                        except FTPError as exc:
                            if not isinstance(getattr(exc, "reason", None), FileNotFoundError):
                                connection.log.warning("could not remove %s: %s", leftover, exc)
                raise

        self._start(connection, what, job, opening, offset=offset)

    @command("STOU", help="STOU [<name>]: upload under a new, unique name")
    @_passive
    async def stou(self, connection: Connection, rest: str) -> bool:
        """RFC 959 §4.1.3 / RFC 1123 §4.1.2.9: the name is chosen here, told as ``150 FILE:``."""
        if self._take_offset(connection):
            connection.response("503", "REST and STOU can't be combined")
            return True
        real, wanted = await self.get_paths(connection, rest.strip() or "stou")
        if not wanted.name:  # the root: a name inside it
            real, wanted = await self.get_paths(connection, str(wanted / "stou"))
        if not await connection.path_io.is_dir(real.parent):
            connection.response("553", "no such directory")  # RFC 959 §5.4: STOU has no 550
            return True
        for attempt in range(_STOU_ATTEMPTS):
            candidate = wanted if attempt == 0 else wanted.with_name(f"{wanted.name}.{attempt}")
            real, virtual = await self.get_paths(connection, str(candidate))
            if not (await connection.logged_in_user.get_permissions(virtual)).writable:
                connection.response("553", "permission denied")
                self.publish(connection, "permission_denied", path=str(virtual), reason="STOU")
                return True
            # exists() first: a name leading out of the root is refused (550), not skipped.
            if not await connection.path_io.exists(real) and await _reserve(connection, real):
                break
        else:
            connection.response("450", "no unique file name available")
            return True
        self._receive_file(
            connection,
            real,
            "wb",
            0,
            f"STOU {virtual}",
            f"FILE: {virtual.name}",
            reserved=True,
        )
        return True

    @command("STOR", help="STOR <file>: upload", needs_argument=True)
    @_passive
    @PathPermissions(PathPermissions.writable, fail_code="553")
    async def stor(self, connection: Connection, rest: str) -> bool:
        return await self._store(connection, rest, append=False)

    @command("APPE", help="APPE <file>: upload, appending", needs_argument=True)
    @_passive
    @PathPermissions(PathPermissions.writable)
    async def appe(self, connection: Connection, rest: str) -> bool:
        return await self._store(connection, rest, append=True)

    # listings --------------------------------------------------------------------------------
    async def _listing_entries(
        self,
        connection: Connection,
        rest: str,
        *,
        directories_only: bool = False,
        with_stats: bool = True,
    ) -> tuple[PurePosixPath, list[tuple[str, os.stat_result | None]]] | None:
        """``(virtual path, [(name, stat), ...])`` of a directory sorted by name, or of
        the one file; None after answering an error. The directory is read with its stat
        results in one backend call (``with_stats``), for listings of many files."""
        real, virtual = await self.get_paths(connection, rest)
        path_io = connection.path_io
        # RFC 959 §5.4 gives LIST/NLST/STAT 450, not 550; RFC 3659 gives MLSD 550.
        refusal = "550" if directories_only else "450"
        if not await path_io.exists(real):
            connection.response(refusal, "path does not exist")
            return None
        if not (await connection.logged_in_user.get_permissions(virtual)).readable:
            connection.response(refusal, "permission denied")
            self.publish(
                connection,
                "permission_denied",
                path=str(virtual),
                reason=connection.state.command or None,
            )
            return None
        if not await path_io.is_dir(real):
            if directories_only:
                connection.response("501", "not a directory (MLSD lists directories; use MLST)")
                return None
            return virtual.parent, [(real.name, await path_io.stat(real))]
        if with_stats:
            return virtual, list(await path_io.names_with_stats(real))
        names = sorted([child.name async for child in path_io.list(real)])
        return virtual, [(name, None) for name in names]

    def _start_listing(self, connection: Connection, what: str, lines: list[str]) -> None:
        text = "".join(f"{line}\r\n" for line in lines)
        try:  # names that were not valid in the encoding go back as the same bytes
            data = text.encode(self.options.protocol.encoding, "surrogateescape")
        except UnicodeEncodeError:
            data = text.encode(self.options.protocol.encoding, "replace")

        async def job(stream: trio.abc.Stream, progress: TransferProgress) -> None:
            await send_data(connection, stream, data)
            progress.bytes = len(data)

        self._start(connection, what, job)

    async def listing_lines(self, connection: Connection, rest: str) -> list[str] | None:
        """``ls -l`` lines for LIST and STAT (owner and group as numeric ids); None after
        answering an error."""
        listed = await self._listing_entries(connection, strip_list_options(rest))
        if listed is None:
            return None
        entries = [(name, stat) for name, stat in listed[1] if stat is not None]
        return list_lines(entries, time.time())

    @command("LIST", help="LIST [<path>]: directory listing, ls -l style")
    @_passive
    async def list(self, connection: Connection, rest: str) -> bool:
        lines = await self.listing_lines(connection, rest)
        if lines is not None:
            self._start_listing(connection, "LIST", lines)
        return True

    @command("NLST", help="NLST [<path>]: names only")
    @_passive
    async def nlst(self, connection: Connection, rest: str) -> bool:
        listed = await self._listing_entries(connection, strip_list_options(rest), with_stats=False)
        if listed is not None:
            self._start_listing(connection, "NLST", [name for name, _ in listed[1]])
        return True

    @command("MLSD", help="MLSD [<dir>]: machine-readable listing (RFC 3659)")
    @_passive
    async def mlsd(self, connection: Connection, rest: str) -> bool:
        listed = await self._listing_entries(connection, rest, directories_only=True)
        if listed is None:
            return True
        real, virtual = await self.get_paths(connection, rest)
        # RFC 3659 §7.5.1: the listed directory itself (cdir) and its parent (pdir).
        lines = [await facts_line(self, connection, real, virtual, ".", type="cdir")]
        if virtual != virtual.parent:
            parent, _ = await self.get_paths(connection, str(virtual.parent))
            lines.append(
                await facts_line(self, connection, parent, virtual.parent, "..", type="pdir")
            )
        facts = chosen_facts(connection)
        entries = [(name, stat) for name, stat in listed[1] if stat is not None]
        shared = connection.logged_in_user.children_permission(virtual)
        appendable = connection.path_io.capabilities().write_at_offset
        if shared is not None:  # one permission for all: ask once, format in one pass
            file_perm = perm_fact(False, shared.readable, shared.writable, appendable)
            dir_perm = perm_fact(True, shared.readable, shared.writable)
            lines += mlsx_lines(entries, file_perm=file_perm, dir_perm=dir_perm, facts=facts)
        else:
            for name, stat in entries:
                permission = await connection.logged_in_user.get_permissions(virtual / name)
                is_dir = S_ISDIR(stat.st_mode)
                perm = perm_fact(is_dir, permission.readable, permission.writable, appendable)
                lines.append(mlsx_line(name, stat, perm=perm, facts=facts))
        self._start_listing(connection, "MLSD", lines)
        return True
