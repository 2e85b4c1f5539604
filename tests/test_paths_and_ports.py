"""Pure pieces: virtual path normalization, the data port pool, peer-address comparison."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_ftp.datachannel import PortPool, same_host
from trio_ftp.errors import NoAvailablePort
from trio_ftp.handlers.datachannel import format_pasv_reply
from trio_ftp.handlers.transfer import strip_list_options
from trio_ftp.paths import resolve_virtual

CWD = PurePosixPath("/home/user")


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("", "/home/user"),
        (".", "/home/user"),
        ("file", "/home/user/file"),
        ("../x", "/home/x"),
        ("../../../../etc/passwd", "/etc/passwd"),
        ("/abs/./path/", "/abs/path"),
        ("//double//slash", "/double/slash"),
        ("a/../../..", "/"),
        ("..", "/home"),
        ("dir with spaces/f", "/home/user/dir with spaces/f"),
    ],
)
def test_resolve_virtual(argument, expected):
    """Arguments resolve to absolute normalized virtual paths; .. stops at /."""
    assert resolve_virtual(CWD, argument) == PurePosixPath(expected)


@given(st.lists(st.sampled_from(["..", ".", "a", "b", "", "c d"]), max_size=12))
def test_resolve_virtual_never_has_dotdot(parts):
    """Whatever the argument, the result is absolute and has no '..' or '.' part."""
    result = resolve_virtual(CWD, "/".join(parts))
    assert result.is_absolute()
    assert ".." not in result.parts
    assert "." not in result.parts


def test_port_pool_lends_and_takes_back():
    """Ports are lent once each and come back; an empty pool raises NoAvailablePort."""
    pool = PortPool([5001, 5002, 5001])
    assert pool.free == 2
    first, second = pool.take(), pool.take()
    assert {first, second} == {5001, 5002}
    with pytest.raises(NoAvailablePort):
        pool.take()
    pool.give_back(first)
    assert pool.take() == first


def test_unlimited_pool_lends_any_port():
    """Without data_ports the pool lends port 0 ("any port", see test_anyport) forever."""
    pool = PortPool(None)
    assert not pool.limited
    assert [pool.take() for _ in range(3)] == [0, 0, 0]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("::ffff:127.0.0.1", "127.0.0.1", True),
        ("127.0.0.2", "127.0.0.1", False),
        ("::1", "::1", True),
        ("::1", "127.0.0.1", False),
    ],
)
def test_same_host(a, b, same):
    """Peer check compares hosts, treating IPv4-mapped IPv6 as its IPv4."""
    assert same_host(a, b) is same


def test_pasv_reply_format():
    """227 text is h1,h2,h3,h4,p1,p2 on one line."""
    assert format_pasv_reply("127.0.0.1", 50001) == "Entering Passive Mode (127,0,0,1,195,81)."


@pytest.mark.parametrize(
    ("argument", "path"),
    [
        ("", ""),
        ("-a", ""),
        ("-la dir", "dir"),
        ("-l -a dir x", "dir x"),
        ("dir", "dir"),
        ("-", "-"),
    ],
)
def test_strip_list_options(argument, path):
    """ls-style options before a LIST path are dropped; a bare '-' is a name."""
    assert strip_list_options(argument) == path
