"""resolve_virtual: '..' at the root is dropped and the walk goes on with what follows."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from trio_ftp.paths import resolve_virtual

P = PurePosixPath


@pytest.mark.parametrize(
    ("cwd", "argument", "expected"),
    [
        ("/", "../a", "/a"),
        ("/", "/../../a/../b", "/b"),
        ("/x", "../../y/./z", "/y/z"),
        ("/x", "", "/x"),
    ],
)
def test_dot_dot_above_the_root_stays_at_the_root(cwd, argument, expected):
    assert resolve_virtual(P(cwd), argument) == P(expected)
