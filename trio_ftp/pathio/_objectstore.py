"""How :class:`~trio_ftp.pathio.FsspecPathIO` writes, removes and renames on one kind of
store: S3 (directory marker objects, multipart uploads it can abort, MD5 ETags) or any
other fsspec file system (its own ``mkdir``, and ``autocommit=False`` files).

Separate so that the S3 specifics are in one place, in blocking calls the backend runs
in worker threads; fsspec's generic calls cannot write a ``name/`` key (s3fs strips the
trailing slash), so markers go through s3fs's own client.
"""

from __future__ import annotations

import errno
import io
import re
from collections.abc import Mapping
from typing import IO, Any, Protocol

__all__ = [
    "MAX_RENAMED_OBJECTS",
    "Flavour",
    "GenericFlavour",
    "MemoryFlavour",
    "S3Flavour",
    "flavour_of",
]

#: Objects a recursive rename copies at most: a bigger tree is refused, not half moved.
MAX_RENAMED_OBJECTS = 100_000
_MD5 = re.compile(r"[0-9a-f]{32}")


class Flavour(Protocol):
    """The store-specific steps (all blocking)."""

    def make_directory(self, file_system: Any, path: str) -> None: ...

    def remove_directory(self, file_system: Any, path: str) -> None: ...

    def open_for_reading(
        self, file_system: Any, path: str, block_size: int, size: int
    ) -> IO[bytes]: ...

    def open_for_writing(
        self, file_system: Any, path: str, part_size: int
    ) -> tuple[IO[bytes], bool]:
        """The file, and whether it needs ``commit()`` after ``close()`` to show."""
        ...

    def discard(self, raw: IO[bytes]) -> None: ...

    def copy_tree(self, file_system: Any, source: str, destination: str) -> None: ...

    def remove_tree(self, file_system: Any, path: str) -> None: ...

    def stored_digest(self, info: Mapping[str, Any], algorithm: str) -> str | None: ...


class GenericFlavour:
    """Any fsspec file system: its ``mkdir``/``rmdir``, and files opened with
    ``autocommit=False`` (for a local file system: a temporary file moved into place on
    commit), thrown away on discard."""

    def make_directory(self, file_system: Any, path: str) -> None:
        file_system.mkdir(path, create_parents=False)

    def remove_directory(self, file_system: Any, path: str) -> None:
        file_system.rmdir(path)

    def open_for_reading(
        self, file_system: Any, path: str, block_size: int, size: int
    ) -> IO[bytes]:
        """Range reads of ``block_size`` with read-ahead: a download never holds more."""
        raw: IO[bytes] = file_system.open(path, "rb", block_size=block_size, cache_type="readahead")
        return raw

    def open_for_writing(
        self, file_system: Any, path: str, part_size: int
    ) -> tuple[IO[bytes], bool]:
        raw: IO[bytes] = file_system.open(path, "wb", block_size=part_size, autocommit=False)
        return raw, True

    def discard(self, raw: IO[bytes]) -> None:
        raw.close()
        raw.discard()  # type: ignore[attr-defined]

    def copy_tree(self, file_system: Any, source: str, destination: str) -> None:
        file_system.copy(source, destination, recursive=True)

    def remove_tree(self, file_system: Any, path: str) -> None:
        file_system.rm(path, recursive=True)

    def stored_digest(self, info: Mapping[str, Any], algorithm: str) -> str | None:
        return None


class _PendingObject(io.BytesIO):
    """A memory file system's upload, kept aside until committed."""

    def __init__(self, file_system: Any, path: str) -> None:
        super().__init__()
        self.file_system = file_system
        self.path = path
        self.data = b""

    def close(self) -> None:
        if not self.closed:
            self.data = self.getvalue()
        super().close()

    def commit(self) -> None:
        self.file_system.pipe_file(self.path, self.data)

    def discard(self) -> None:
        self.data = b""


class MemoryFlavour(GenericFlavour):
    """fsspec's memory file system, which shows a file while it is written (it ignores
    ``autocommit``) and hands every reader the same file object: uploads are kept aside
    until committed, and each download reads its own copy."""

    def open_for_reading(
        self, file_system: Any, path: str, block_size: int, size: int
    ) -> IO[bytes]:
        return io.BytesIO(file_system.cat_file(path))

    def open_for_writing(
        self, file_system: Any, path: str, part_size: int
    ) -> tuple[IO[bytes], bool]:
        return _PendingObject(file_system, path), True


class _S3Download:
    """A download streamed by one ``GetObject`` from the current position (``Range:
    bytes=N-``), read on s3fs's event loop; TCP flow control holds the store back while
    the FTP client is slower. Blocking: call from a worker thread."""

    def __init__(self, file_system: Any, bucket: str, key: str, size: int) -> None:
        self.file_system = file_system
        self.bucket = bucket
        self.key = key
        self.size = size
        self.position = 0
        self.body: Any = None
        self.closed = False

    def _on_loop(self, coroutine_function: Any, *args: Any) -> Any:
        from fsspec.asyn import sync  # type: ignore[import-untyped,import-not-found,unused-ignore]

        return sync(self.file_system.loop, coroutine_function, *args)

    async def _open(self) -> Any:
        ranged = {"Range": f"bytes={self.position}-"} if self.position else {}
        reply = await self.file_system._call_s3(
            "get_object", Bucket=self.bucket, Key=self.key, **ranged
        )
        return reply["Body"]

    async def _fill(self, count: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while total < count:
            chunk = await self.body.read(count - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)

    def read(self, count: int = -1) -> bytes:
        if count < 0:
            count = self.size - self.position
        if count <= 0 or self.position >= self.size:
            return b""
        if self.body is None:
            self.body = self._on_loop(self._open)
        data: bytes = self._on_loop(self._fill, count)
        self.position += len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, "negative seek position")
        if base + offset != self.position:
            self._drop_body()
            self.position = base + offset
        return self.position

    def _drop_body(self) -> None:
        body, self.body = self.body, None
        if body is not None:
            body.close()

    def close(self) -> None:
        self._drop_body()
        self.closed = True


class S3Flavour:
    """S3 through s3fs: ``name/`` marker objects as SFTPGo and the AWS console write
    them, uploads that show only when complete (``autocommit``: one PUT for a small file,
    a multipart upload otherwise, aborted on discard), and the ETag as MD5."""

    def _split(self, file_system: Any, path: str) -> tuple[str, str]:
        bucket, key, _ = file_system.split_path(path)
        return str(bucket), str(key)

    def make_directory(self, file_system: Any, path: str) -> None:
        bucket, key = self._split(file_system, path)
        if not key:
            raise PermissionError(errno.EACCES, "buckets are not created over FTP")
        file_system.call_s3("put_object", Bucket=bucket, Key=key.rstrip("/") + "/", Body=b"")
        file_system.invalidate_cache(path)

    def remove_directory(self, file_system: Any, path: str) -> None:
        bucket, key = self._split(file_system, path)
        if not key:
            raise PermissionError(errno.EACCES, "buckets are not removed over FTP")
        file_system.call_s3("delete_object", Bucket=bucket, Key=key.rstrip("/") + "/")
        file_system.invalidate_cache(path)

    def open_for_reading(
        self, file_system: Any, path: str, block_size: int, size: int
    ) -> IO[bytes]:
        """One streamed GET from the position to the end (a new one after a seek): as
        fast as s3fs's own ``get_file``, where reads of ``block_size`` ranges cost a
        request each."""
        bucket, key = self._split(file_system, path)
        return _S3Download(file_system, bucket, key, size)  # type: ignore[return-value]

    def open_for_writing(
        self, file_system: Any, path: str, part_size: int
    ) -> tuple[IO[bytes], bool]:
        raw: IO[bytes] = file_system.open(path, "wb", block_size=part_size)
        return raw, False

    def discard(self, raw: IO[bytes]) -> None:
        raw.discard()  # type: ignore[attr-defined]  # aborts the multipart upload
        raw.closed = True  # type: ignore[misc]  # so that its finaliser uploads nothing

    def _keys(self, file_system: Any, bucket: str, prefix: str) -> list[str]:
        keys: list[str] = []
        token: str | None = None
        while len(keys) <= MAX_RENAMED_OBJECTS:
            more = {"ContinuationToken": token} if token else {}
            page = file_system.call_s3("list_objects_v2", Bucket=bucket, Prefix=prefix, **more)
            keys.extend(str(item["Key"]) for item in page.get("Contents", []))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return keys
        raise OSError(errno.EOPNOTSUPP, f"more than {MAX_RENAMED_OBJECTS} objects to rename")

    def copy_tree(self, file_system: Any, source: str, destination: str) -> None:
        bucket, source_key = self._split(file_system, source)
        target_bucket, target_key = self._split(file_system, destination)
        prefix = source_key.rstrip("/") + "/"
        for key in self._keys(file_system, bucket, prefix):
            file_system.call_s3(
                "copy_object",
                Bucket=target_bucket,
                Key=target_key.rstrip("/") + "/" + key[len(prefix) :],
                CopySource={"Bucket": bucket, "Key": key},
            )
        file_system.call_s3(
            "put_object", Bucket=target_bucket, Key=target_key.rstrip("/") + "/", Body=b""
        )
        file_system.invalidate_cache(destination)

    def remove_tree(self, file_system: Any, path: str) -> None:
        bucket, key = self._split(file_system, path)
        prefix = key.rstrip("/") + "/"
        keys = self._keys(file_system, bucket, prefix)
        for start in range(0, len(keys), 1000):  # DeleteObjects takes 1,000 keys a call
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            file_system.call_s3("delete_objects", Bucket=bucket, Delete={"Objects": batch})
        file_system.invalidate_cache(path)

    def stored_digest(self, info: Mapping[str, Any], algorithm: str) -> str | None:
        """S3's ETag is the MD5 of an object uploaded in one part without KMS or a
        customer key; a multipart ETag (``...-3``) is not."""
        if algorithm.upper() != "MD5":
            return None
        etag = str(info.get("ETag") or "").strip('"').lower()
        encryption = info.get("ServerSideEncryption")
        if info.get("SSECustomerAlgorithm") or encryption not in (None, "AES256"):
            return None
        return etag if _MD5.fullmatch(etag) else None


_GENERIC = GenericFlavour()
_MEMORY = MemoryFlavour()
_S3 = S3Flavour()


def flavour_of(file_system: Any) -> Flavour:
    """S3's flavour for s3fs, the memory one for fsspec's memory file system, the generic
    one for every other file system."""
    if hasattr(file_system, "call_s3") and hasattr(file_system, "split_path"):
        return _S3
    if "memory" in _protocols(file_system):
        return _MEMORY
    return _GENERIC


def _protocols(file_system: Any) -> tuple[str, ...]:
    protocol = getattr(file_system, "protocol", ())
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
