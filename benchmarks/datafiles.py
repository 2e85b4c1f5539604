"""The files every server serves, made once per run in a temporary directory.

The transfer file holds real bytes (a random block repeated), not a sparse hole: reading a
sparse file costs the kernel nothing and would flatter every server. The root is readable
by everyone and the upload directory writable by everyone, because vsftpd's anonymous user
reads and writes as the ``ftp`` account.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SMALL_SIZE", "DataSet", "make_data_set"]

_BLOCK = 4 << 20
SMALL_SIZE = 4096  # the mirror rows' files: lftp mirror of many small files


@dataclass(frozen=True)
class DataSet:
    """A served root and the virtual paths of what is in it."""

    root: Path
    transfer_path: str  # RETR / STOR / FTPS RETR, ``transfer_size`` bytes
    transfer_size: int
    small_path: str  # the 4 KiB file of each session
    listing_path: str  # a directory of ``listing_files`` files
    listing_files: int
    upload_dir: str
    small_dir: str = "/small"  # ``small_files`` files of ``SMALL_SIZE`` bytes (mirror rows)
    small_files: int = 0

    def small_names(self) -> list[str]:
        """The names in :attr:`small_dir`, in order."""
        return [f"s-{index:05d}.bin" for index in range(self.small_files)]

    def real(self, virtual: str) -> Path:
        """The real path of a virtual one."""
        return self.root / virtual.lstrip("/")


def make_data_set(
    root: Path, transfer_size: int, listing_files: int, small_files: int = 0
) -> DataSet:
    """Create the root, the files and the listing directory under ``root``."""
    data = DataSet(
        root,
        "/big.bin",
        transfer_size,
        "/small.bin",
        "/many",
        listing_files,
        "/up",
        small_files=small_files,
    )
    root.mkdir(mode=0o755, exist_ok=True)
    os.chmod(root, 0o755)
    _write_random(data.real(data.transfer_path), transfer_size)
    _write_random(data.real(data.small_path), 4096)
    listing = data.real(data.listing_path)
    listing.mkdir(mode=0o755)
    line = os.urandom(48).hex().encode() + b"\n"
    for index in range(listing_files):
        (listing / f"file-{index:05d}.txt").write_bytes(line)
    small = data.real(data.small_dir)
    small.mkdir(mode=0o755)
    for name in data.small_names():
        _write_random(small / name, SMALL_SIZE)
    upload = data.real(data.upload_dir)
    upload.mkdir()
    os.chmod(upload, 0o777)
    return data


def _write_random(path: Path, size: int) -> None:
    block = os.urandom(min(_BLOCK, size))
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            remaining -= f.write(block[:remaining])
    os.chmod(path, 0o644)
