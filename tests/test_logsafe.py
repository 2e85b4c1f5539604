"""printable(): what a client-chosen string looks like in a log line."""

from __future__ import annotations

import logging

import pytest

from trio_ftp.logsafe import SessionLog, printable


@pytest.mark.parametrize(
    ("raw", "logged"),
    [
        ("plain name.txt", "plain name.txt"),
        ("café 日本 🙂", "café 日本 🙂"),
        ("a\x1b[31mb", "a\\x1b[31mb"),
        ("x\r\ny", "x\\x0d\\x0ay"),
        ("tab\there", "tab\\x09here"),
        ("del\x7f nel\x85", "del\\x7f nel\\x85"),
        ("line\u2028sep", "line\\u2028sep"),
        ("undecodable\udcff", "undecodable\\udcff"),
        ("forged \\x1b", "forged \\\\x1b"),
    ],
)
def test_printable(raw: str, logged: str) -> None:
    assert printable(raw) == logged
    assert printable(raw).isprintable()


def test_session_log_escapes_every_argument(caplog: pytest.LogCaptureFixture) -> None:
    """%s and %r arguments are escaped, numbers stay numbers."""
    log = SessionLog(logging.getLogger("trio_ftp.test"), {"session": 1, "peer": "p"})
    with caplog.at_level(logging.INFO, logger="trio_ftp.test"):
        log.info("%s %r %d %.1f", "a\nb", "c\x1bd", 7, 2.5)
    assert caplog.records[0].getMessage() == "[1 p] a\\x0ab 'c\\x1bd' 7 2.5"
