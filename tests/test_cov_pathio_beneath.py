"""pathio._beneath's probes and edge cases: where openat2 is not tried, kernels without
RESOLVE_CACHED, statfs failures, names that cannot be split, and a path that changes under a
second resolution. test_pathio_confinement.py covers confinement itself."""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from trio_ftp.errors import PermissionDenied
from trio_ftp.pathio import _beneath

needs_openat2 = pytest.mark.skipif(
    not _beneath.supported(), reason="openat2 confinement is not available here"
)


@pytest.fixture
def fresh_probes() -> Iterator[None]:
    """Forget every cached probe before and after the test."""
    probes = [_beneath._libc_syscall, _beneath.supported, _beneath.cached_lookups_work]
    for probe in probes:
        probe.cache_clear()
    yield
    for probe in probes:
        probe.cache_clear()


@pytest.mark.usefixtures("fresh_probes")
@pytest.mark.parametrize(
    ("system", "machine"), [("darwin", "arm64"), ("win32", "AMD64"), ("linux", "mips")]
)
def test_openat2_is_not_tried_off_linux_or_on_an_unknown_machine(system, machine, monkeypatch):
    """Only Linux on a listed machine gets syscall 437: elsewhere no probe, ENOSYS, fallback."""
    monkeypatch.setattr(sys, "platform", system)
    monkeypatch.setattr(platform, "machine", lambda: machine)
    assert _beneath._libc_syscall() is None
    assert not _beneath.supported()
    assert not _beneath.cached_lookups_work()
    with pytest.raises(OSError, match=os.strerror(errno.ENOSYS)) as caught:
        _beneath.openat2(0, "x", os.O_RDONLY)
    assert caught.value.errno == errno.ENOSYS


@pytest.mark.usefixtures("fresh_probes")
def test_no_libc_means_no_openat2_and_no_statfs(monkeypatch, tmp_path):
    """A libc that cannot be loaded (static builds, odd platforms): no confinement probe and no
    file-system type, rather than an exception at import or first use."""

    def no_libc(*args: Any, **kwargs: Any) -> None:
        raise OSError("no libc here")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert _beneath._libc_syscall() is None
    assert not _beneath.supported()
    assert _beneath.statfs_type(str(tmp_path)) is None


def test_statfs_type_of_a_missing_path_is_none(tmp_path):
    assert _beneath.statfs_type(str(tmp_path / "missing")) is None
    assert isinstance(_beneath.statfs_type(str(tmp_path)), int)


@needs_openat2
@pytest.mark.usefixtures("fresh_probes")
def test_kernel_without_resolve_cached_means_no_cached_lookups(monkeypatch):
    """Kernels before 5.12 answer EINVAL to RESOLVE_CACHED: every lookup goes to a thread."""
    real_openat2 = _beneath.openat2

    def old_kernel(*args: Any, resolve: int = _beneath._RESOLVE, **kwargs: Any) -> int:
        if resolve & _beneath.RESOLVE_CACHED:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_openat2(*args, resolve=resolve, **kwargs)

    monkeypatch.setattr(_beneath, "openat2", old_kernel)
    assert _beneath.supported()
    assert not _beneath.cached_lookups_work()


@pytest.mark.parametrize(
    ("relative", "code"),
    [(".", errno.EBUSY), ("a/.", errno.EINVAL), ("a/..", errno.EINVAL), ("a/", errno.EINVAL)],
)
def test_split_refuses_the_root_and_dot_names(relative, code):
    """Operations on a name never act on the root itself nor on '.' or '..'."""
    with pytest.raises(OSError, match=os.strerror(code)) as caught:
        _beneath.Confined("/srv", relative).split()
    assert caught.value.errno == code


def test_split_and_child():
    assert _beneath.Confined("/srv", "a/b/c").split() == (_beneath.Confined("/srv", "a/b"), "c")
    assert _beneath.Confined("/srv", "c").split() == (_beneath.Confined("/srv", "."), "c")
    assert _beneath.Confined("/srv", ".").child("x") == _beneath.Confined("/srv", "x")
    assert _beneath.Confined("/srv", "a").child("x") == _beneath.Confined("/srv", "a/x")


def test_is_within():
    assert _beneath.is_within("/srv", "/srv")
    assert _beneath.is_within("/srv/a", "/srv")
    assert _beneath.is_within("/srv/a", "/srv/")
    assert not _beneath.is_within("/srvx", "/srv")
    assert not _beneath.is_within("/", "/srv")


@needs_openat2
def test_absolute_symlink_inside_the_root_is_followed(tmp_path):
    """RESOLVE_BENEATH refuses an absolute symlink (EXDEV) even when it points inside; the
    real path is checked and resolved again beneath the root."""
    (tmp_path / "target").write_bytes(b"inside")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with _beneath.Root(str(tmp_path)) as root:
        fd = root.open("link", os.O_RDONLY)
    try:
        assert os.read(fd, 100) == b"inside"
    finally:
        os.close(fd)


@needs_openat2
def test_path_that_changes_between_resolutions_is_refused(tmp_path, monkeypatch):
    """If the second resolution (after the real-path check) also leaves the root, the path
    changed under us again: refused, not retried in a loop."""
    (tmp_path / "target").write_bytes(b"inside")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    calls: list[str] = []

    def always_exdev(dir_fd: int, path: str, *args: Any, **kwargs: Any) -> int:
        calls.append(path)
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), path)

    monkeypatch.setattr(_beneath, "openat2", always_exdev)
    root = _beneath.Root(str(tmp_path))
    with root, pytest.raises(PermissionDenied, match=_beneath.OUTSIDE):
        root.open("link", os.O_RDONLY)
    assert calls == ["link", "target"]


@needs_openat2
def test_second_resolution_failure_is_the_real_error(tmp_path, monkeypatch):
    """Any other failure of the second resolution (the target vanished) is raised as is."""
    (tmp_path / "target").write_bytes(b"inside")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    real_openat2 = _beneath.openat2

    def vanished(dir_fd: int, path: str, *args: Any, **kwargs: Any) -> int:
        if path == "target":
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        return real_openat2(dir_fd, path, *args, **kwargs)

    monkeypatch.setattr(_beneath, "openat2", vanished)
    with _beneath.Root(str(tmp_path)) as root, pytest.raises(FileNotFoundError):
        root.open("link", os.O_RDONLY)


@needs_openat2
def test_root_descriptor_is_closed(tmp_path):
    before = set(os.listdir("/proc/self/fd"))
    with _beneath.Root(str(tmp_path)) as root:
        assert str(root.fd) in os.listdir("/proc/self/fd")
    assert set(os.listdir("/proc/self/fd")) == before


def test_root_path_is_a_directory(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        _beneath.Root(str(tmp_path / "file"))
