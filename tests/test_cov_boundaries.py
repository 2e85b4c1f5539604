"""call_user_code: an FTPError raised by user code is its chosen reply, passed through
unlogged; any other exception is logged once and becomes the ``failed`` reply."""

from __future__ import annotations

import logging

import pytest

from trio_ftp.boundaries import UserCodeFailed, call_user_code
from trio_ftp.errors import ReplyError

log = logging.getLogger("test_cov_boundaries")


async def test_reply_error_from_user_code_passes_through_unlogged(caplog):
    chosen = ReplyError("504", "not that one")

    async def answers() -> None:
        raise chosen

    with pytest.raises(ReplyError) as caught:
        await call_user_code(
            answers, what="greeting()", seconds=5, log=log, failed=UserCodeFailed("451", "x")
        )
    assert caught.value is chosen
    assert not caplog.records


async def test_bug_in_user_code_is_logged_once_and_becomes_failed(caplog):
    async def buggy() -> None:
        raise KeyError("oops")

    failed = UserCodeFailed("451", "greeting failed")
    with pytest.raises(UserCodeFailed) as caught:
        await call_user_code(buggy, what="greeting()", seconds=5, log=log, failed=failed)
    assert caught.value is failed
    assert [r.getMessage() for r in caplog.records] == ["greeting() raised"]
    assert caplog.records[0].exc_info is not None
