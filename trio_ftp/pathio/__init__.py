"""Path IO: the file-system backends a session reads and writes through.

Every command goes through an :class:`AbstractPathIO` (``_base``): the local disk
(:class:`PathIO`, ``_local``), memory (:class:`MemoryPathIO`, ``_memory``) or any fsspec
file system such as an S3 bucket (:class:`FsspecPathIO`, ``_fsspec``), wrapped for
each session by :class:`GuardedPathIO` (``_guard``). The API follows aioftp's path IO.
``_beneath`` holds the local backend's confinement at use time (Linux ``openat2``).
Import from here: the submodules are private.
"""

from ._base import DEFAULT_BLOCK_SIZE, AbstractPathIO, AsyncFile, Capabilities
from ._base import OPEN_MODES as OPEN_MODES
from ._base import PathType as PathType
from ._fsspec import FsspecPathIO, StorageRoot, is_storage_url
from ._guard import GuardedPathIO
from ._local import PathIO
from ._memory import MemoryPathIO, MemoryTree

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "AbstractPathIO",
    "AsyncFile",
    "Capabilities",
    "FsspecPathIO",
    "GuardedPathIO",
    "MemoryPathIO",
    "MemoryTree",
    "PathIO",
    "StorageRoot",
    "is_storage_url",
]
