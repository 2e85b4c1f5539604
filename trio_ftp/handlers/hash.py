"""HASH and OPTS HASH: a file's digest without downloading it (draft-bryan-ftpext-hash-02).

``HASH <file>`` answers ``213 <algorithm> <start>-<end> <hex digest> <file>``, ``end`` being
the last byte hashed (inclusive, as in the draft's ``0-49`` for a 50-byte file; an empty range
is written ``<start>-<start>``). A preceding ``REST <offset>`` hashes from ``offset`` on, and
``RANG <start> <end>`` hashes just those bytes; either is consumed as by a transfer.

What it does: the path must be a regular file (``stat``; else ``550``) the user may read. The
hash then runs as the session's abortable transfer (``connection.start_transfer``): the session
keeps reading, ``ABOR`` answers ``426`` then ``226``, other commands wait their turn. The file
is opened and read through the session's path IO, :data:`HASH_BLOCK_SIZE` bytes per read, so
confinement applies and each read is bounded by ``path_timeout`` (then ``451``). Each block is
hashed in a worker thread under the server's own ``hash_threads`` limiter
(:data:`HASH_THREADS` at a time), never on the event loop and never in trio's default thread
pool: concurrent hashes of big files wait for each other, not the quick path look-ups of
other sessions. Cancellation is seen between blocks.
"""

from __future__ import annotations

import functools
import hashlib
import stat
import zlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import trio

from ..base import ServerBase
from ..commands import command
from ..conditions import ConnectionConditions, PathConditions, PathPermissions, worker
from ..connection import Connection
from .dataio import TransferProgress, next_size

__all__ = ["HASH_ALGORITHMS", "HASH_BLOCK_SIZE", "HASH_THREADS", "HashCommands", "Hasher"]

#: Bytes read (and hashed) at a time: one path-IO read and one worker-thread call each.
HASH_BLOCK_SIZE = 1 << 20

#: Worker threads hashing at once, server-wide (``HashCommands.hash_threads``). One thread
#: hashes ~1.7 GB/s of sha256 or ~0.7 GB/s of md5 (measured on the test machine), so two keep
#: a disk busy without taking every core; more concurrent HASHes wait their turn per block.
HASH_THREADS = 2

_login = ConnectionConditions(ConnectionConditions.login_required)


class Hasher(Protocol):
    """What ``HashCommands.hash_algorithms`` factories return (a hashlib object fits)."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


class _CRC32:
    """CRC-32 (``zlib.crc32``) with a hashlib-like interface: 8 lower-case hex digits."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes, /) -> None:
        self.value = zlib.crc32(data, self.value)

    def hexdigest(self) -> str:
        return f"{self.value:08x}"


def _hashlib(name: str) -> Callable[[], Hasher]:
    return lambda: hashlib.new(name, usedforsecurity=False)


#: Algorithm name (as in FEAT, OPTS HASH and replies) -> a factory of fresh hashers.
HASH_ALGORITHMS: Mapping[str, Callable[[], Hasher]] = {
    "SHA-256": _hashlib("sha256"),
    "SHA-1": _hashlib("sha1"),
    "MD5": _hashlib("md5"),
    "CRC32": _CRC32,
}


class HashCommands(ServerBase):
    """File digests (draft-bryan-ftpext-hash-02).

    Attributes:
        hash_algorithms: name -> hasher factory; the first is the session's default.
            Override in a subclass to offer others (FEAT and OPTS HASH follow).
    """

    hash_algorithms: Mapping[str, Callable[[], Hasher]] = HASH_ALGORITHMS

    @functools.cached_property
    def hash_threads(self) -> trio.CapacityLimiter:
        """The server's limiter for hashing threads (:data:`HASH_THREADS` tokens), apart
        from trio's default one so long hashes never hold the threads path look-ups need."""
        return trio.CapacityLimiter(HASH_THREADS)

    def hash_algorithm(self, connection: Connection) -> str:
        """The session's selected algorithm (``OPTS HASH``), by default the first one."""
        selected = connection.hash_algorithm
        if selected is None or selected not in self.hash_algorithms:
            return next(iter(self.hash_algorithms))
        return selected

    def session_feature_lines(self, connection: Connection) -> list[str]:
        """Per-session FEAT lines: ``HASH`` with ``*`` on the selected algorithm."""
        lines = super().session_feature_lines(connection)
        if "hash" in self.commands_mapping:
            selected = self.hash_algorithm(connection)
            names = [name + ("*" if name == selected else "") for name in self.hash_algorithms]
            lines.append("HASH " + ";".join(names))
        return lines

    async def opts_hash(self, connection: Connection, value: str) -> None:
        """``OPTS HASH``: the selected algorithm; ``OPTS HASH <name>`` selects one."""
        wanted = value.strip().upper()
        if wanted:
            names = [name for name in self.hash_algorithms if name.upper() == wanted]
            if not names:
                choices = ", ".join(self.hash_algorithms)
                connection.response("501", f"unknown hash algorithm (choose from {choices})")
                return
            connection.hash_algorithm = names[0]
        connection.response("200", self.hash_algorithm(connection))

    @command(
        "HASH",
        help="HASH <file>: the file's digest (OPTS HASH <algorithm> chooses; REST <offset> starts)",
        needs_argument=True,
    )
    @_login
    @PathConditions(PathConditions.path_must_exists, PathConditions.path_must_be_file)
    @PathPermissions(PathPermissions.readable)
    async def hash(self, connection: Connection, rest: str) -> bool:
        real, _ = await self.get_paths(connection, rest)
        offset, limit = connection.state.take_range()
        info = await connection.path_io.stat(real)
        if not stat.S_ISREG(info.st_mode):  # whatever the backend's is_file said
            connection.response("550", "path is not a file")
            return True
        if offset > info.st_size:
            connection.response("554", f"restart offset {offset} is past the end ({info.st_size})")
            return True
        algorithm = self.hash_algorithm(connection)

        @worker
        async def job(server: HashCommands, connection: Connection) -> None:
            progress = TransferProgress(f"HASH {rest}")
            connection.transfer_progress = progress  # what STAT reports meanwhile
            if not offset and limit is None:  # the whole file: the store may know already
                digest = await connection.path_io.stored_digest(real, algorithm)
                if digest is not None:
                    end = info.st_size - 1 if info.st_size else 0
                    connection.response("213", f"{algorithm} 0-{end} {digest} {rest}")
                    return
            hasher = self.hash_algorithms[algorithm]()
            count = await self.hash_file(connection, real, offset, hasher, limit, progress)
            end = offset + count - 1 if count else offset
            connection.response("213", f"{algorithm} {offset}-{end} {hasher.hexdigest()} {rest}")

        connection.start_transfer(job, self, connection)
        return True

    async def hash_file(
        self,
        connection: Connection,
        real: Any,
        offset: int,
        hasher: Hasher,
        limit: int | None = None,
        progress: TransferProgress | None = None,
    ) -> int:
        """Feed the file's bytes from ``offset`` (at most ``limit``) to ``hasher``; returns
        how many. Reads go through ``connection.path_io`` (confinement, ``path_timeout`` per
        read), :data:`HASH_BLOCK_SIZE` at a time; each block is hashed in a worker thread
        under :attr:`hash_threads`. Cancellation is seen at every read and between blocks.
        ``progress.bytes`` (for STAT) counts the bytes hashed so far."""
        count = 0
        async with connection.path_io.open(real, mode="rb") as file:
            if offset:
                await file.seek(offset)
            while block := await file.read(next_size(HASH_BLOCK_SIZE, limit, count)):
                await trio.to_thread.run_sync(hasher.update, block, limiter=self.hash_threads)
                count += len(block)
                if progress is not None:
                    progress.bytes = count
        return count
