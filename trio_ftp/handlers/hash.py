"""HASH and OPTS HASH: a file's digest without downloading it (draft-bryan-ftpext-hash-02).

``HASH <file>`` answers ``213 <algorithm> <start>-<end> <hex digest> <file>``, ``end`` being
the last byte hashed (inclusive, as in the draft's ``0-49`` for a 50-byte file; an empty range
is written ``<start>-<start>``). A preceding ``REST <offset>`` hashes from ``offset`` on, and
``RANG <start> <end>`` hashes just those bytes; either is consumed as by a transfer.

Hashing runs off the event loop: a local file (the backend gives its descriptor) is read
and hashed in one worker thread; for other backends the file is read through the path IO in
1 MiB blocks and each block is hashed in a worker thread.
"""

from __future__ import annotations

import functools
import hashlib
import os
import zlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import trio

from ..base import ServerBase
from ..commands import command
from ..conditions import ConnectionConditions, PathConditions, PathPermissions
from ..connection import Connection
from ..errors import PathIOError
from .dataio import next_size

__all__ = ["HASH_ALGORITHMS", "HASH_BLOCK_SIZE", "HashCommands", "Hasher"]

#: Bytes read (and hashed) at a time.
HASH_BLOCK_SIZE = 1 << 20

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


def _hash_descriptor(
    fd: int, offset: int, limit: int | None, hasher: Hasher, block_size: int
) -> int:
    """Hash the open file ``fd`` from ``offset``, at most ``limit`` bytes. Runs in a worker
    thread that stops at the next block once the transfer is cancelled (``ABOR``): the
    descriptor stays valid until it returns. ``pread`` leaves the file position alone."""
    count = 0
    while block := os.pread(fd, next_size(block_size, limit, count), offset + count):
        hasher.update(block)
        count += len(block)
        trio.from_thread.check_cancelled()
    return count


class HashCommands(ServerBase):
    """File digests (draft-bryan-ftpext-hash-02).

    Attributes:
        hash_algorithms: name -> hasher factory; the first is the session's default.
            Override in a subclass to offer others (FEAT and OPTS HASH follow).
    """

    hash_algorithms: Mapping[str, Callable[[], Hasher]] = HASH_ALGORITHMS

    def hash_algorithm(self, connection: Connection) -> str:
        """The session's selected algorithm (``OPTS HASH``), by default the first one."""
        selected: str | None = connection.get("hash_algorithm")
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
        offset, limit = self.take_range(connection)
        size = (await connection.path_io.stat(real)).st_size
        if offset > size:
            connection.response("554", f"restart offset {offset} is past the end ({size})")
            return True
        algorithm = self.hash_algorithm(connection)
        hasher = self.hash_algorithms[algorithm]()
        count = await self.hash_file(connection, real, offset, hasher, limit)
        end = offset + count - 1 if count else offset
        connection.response("213", f"{algorithm} {offset}-{end} {hasher.hexdigest()} {rest}")
        return True

    async def hash_file(
        self,
        connection: Connection,
        real: Any,
        offset: int,
        hasher: Hasher,
        limit: int | None = None,
    ) -> int:
        """Feed the file's bytes from ``offset`` (at most ``limit``) to ``hasher``; returns
        how many."""
        path_io = connection.path_io
        count = 0
        async with path_io.open(real, mode="rb") as file:  # confined like every open
            fd = path_io.native_fd(file)
            if fd is not None:  # a local file: read and hash it in one worker thread
                job = functools.partial(
                    _hash_descriptor, fd, offset, limit, hasher, HASH_BLOCK_SIZE
                )
                try:
                    return await trio.to_thread.run_sync(job)
                except OSError as exc:
                    raise PathIOError(reason=exc) from exc
            if offset:
                await file.seek(offset)
            while block := await file.read(next_size(HASH_BLOCK_SIZE, limit, count)):
                await trio.to_thread.run_sync(hasher.update, block)
                count += len(block)
        return count
