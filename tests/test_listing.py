"""LIST / MLSx / MDTM formatting (trio_ftp.listing): pure functions, no file system."""

from __future__ import annotations

import calendar
import ftplib
import locale
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_ftp.listing import (
    DEFAULT_FACTS,
    MONTHS,
    SUPPORTED_FACTS,
    StatLike,
    list_line,
    list_lines,
    list_time,
    mlst_feat_line,
    mlst_type,
    mlsx_line,
    mlsx_lines,
    mlsx_time,
    mode_string,
    parse_mlsx_time,
    perm_fact,
    unique_fact,
)

DAY = 86400


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> int:
    """A UTC timestamp."""
    return calendar.timegm((year, month, day, hour, minute, sec, 0, 0, 0))


@dataclass(frozen=True)
class FakeStat:
    st_mode: int = stat.S_IFREG | 0o644
    st_size: int = 1234
    st_mtime: float = ts(2025, 11, 24, 12, 34, 56)
    st_nlink: int = 1
    st_ino: int = 0x1A2B
    st_dev: int = 0x801


NOW = ts(2025, 11, 25, 8, 0)
FILE = FakeStat()
DIR = FakeStat(st_mode=stat.S_IFDIR | 0o755, st_size=4096, st_nlink=3)


def test_fake_and_real_stat_are_statlike(tmp_path: Path) -> None:
    stats: list[StatLike] = [FILE, os.stat(tmp_path)]
    assert [mlst_type(s) for s in stats] == ["file", "dir"]


# --- mode strings --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (stat.S_IFDIR | 0o755, "drwxr-xr-x"),
        (stat.S_IFREG | 0o644, "-rw-r--r--"),
        (stat.S_IFREG | 0o755, "-rwxr-xr-x"),
        (stat.S_IFLNK | 0o777, "lrwxrwxrwx"),
        (stat.S_IFREG | 0o4755, "-rwsr-xr-x"),
        (stat.S_IFREG | 0o4644, "-rwSr--r--"),
        (stat.S_IFREG | 0o2755, "-rwxr-sr-x"),
        (stat.S_IFREG | 0o2745, "-rwxr-Sr-x"),
        (stat.S_IFDIR | 0o1777, "drwxrwxrwt"),
        (stat.S_IFDIR | 0o1770, "drwxrwx--T"),
        (stat.S_IFIFO | 0o600, "prw-------"),
        (stat.S_IFCHR | 0o666, "crw-rw-rw-"),
        (stat.S_IFBLK | 0o660, "brw-rw----"),
        (stat.S_IFSOCK | 0o700, "srwx------"),
        (stat.S_IFREG, "----------"),
    ],
)
def test_mode_string(mode: int, expected: str) -> None:
    assert mode_string(mode) == expected


# --- ls -l dates ---------------------------------------------------------------------------
def test_recent_time_shows_hour_and_minute() -> None:
    assert list_time(ts(2025, 11, 24, 12, 34, 59), NOW) == "Nov 24 12:34"


def test_old_time_shows_the_year_right_aligned() -> None:
    assert list_time(ts(2024, 11, 24, 12, 34), NOW) == "Nov 24  2024"
    assert list_time(NOW - 181 * DAY, NOW) == "May 28  2025"


def test_recent_boundary_is_180_days() -> None:
    assert list_time(NOW - 179 * DAY, NOW) == "May 30 08:00"
    assert list_time(NOW - 180 * DAY, NOW) == "May 29  2025"


def test_future_within_an_hour_is_recent_beyond_is_not() -> None:
    assert list_time(NOW + 3600, NOW) == "Nov 25 09:00"
    assert list_time(NOW + 3601, NOW) == "Nov 25  2025"
    assert list_time(ts(2026, 3, 1), NOW) == "Mar  1  2026"


def test_day_is_space_padded() -> None:
    assert list_time(ts(2025, 11, 4, 1, 2), NOW) == "Nov  4 01:02"
    assert list_time(ts(2020, 1, 4), NOW) == "Jan  4  2020"


def test_times_are_utc_not_local(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    if not hasattr(time, "tzset"):  # pragma: no cover - Windows
        pytest.skip("needs time.tzset")
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert list_time(ts(2025, 11, 24, 23, 30), NOW) == "Nov 24 23:30"
        assert mlsx_time(ts(2025, 11, 24, 23, 30)) == "20251124233000"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_every_month_in_english() -> None:
    names = [list_time(ts(2020, month, 15), NOW)[:3] for month in range(1, 13)]
    assert names == list(MONTHS)
    assert MONTHS[0] == "Jan"
    assert MONTHS[10] == "Nov"


def test_month_names_ignore_the_locale() -> None:
    previous = locale.setlocale(locale.LC_TIME)
    for name in ("de_DE.UTF-8", "fr_FR.UTF-8", "C.UTF-8", "C"):
        try:
            locale.setlocale(locale.LC_TIME, name)
        except locale.Error:
            continue
        try:
            assert list_time(ts(2020, 12, 1), NOW) == "Dec  1  2020"
            assert list_time(ts(2020, 5, 1), NOW) == "May  1  2020"
        finally:
            locale.setlocale(locale.LC_TIME, previous)


def test_all_dates_are_twelve_characters() -> None:
    for when in (0, NOW, NOW - 10, NOW - 400 * DAY, ts(9999, 12, 31)):
        assert len(list_time(when, NOW)) == 12


# --- LIST lines ----------------------------------------------------------------------------
def test_list_line_layout() -> None:
    line = list_line("report.txt", FILE, NOW)
    assert line == ("-rw-r--r--    1 ftp      ftp              1234 Nov 24 12:34 report.txt")


def test_list_line_fields_split_back() -> None:
    line = list_line("a name  with spaces", DIR, NOW, owner="alice", group="staff")
    fields = line.split(None, 8)
    assert fields == [
        "drwxr-xr-x",
        "3",
        "alice",
        "staff",
        "4096",
        "Nov",
        "24",
        "12:34",
        "a name  with spaces",
    ]


def test_list_line_old_file_and_wide_fields() -> None:
    big = FakeStat(st_size=10**15, st_nlink=12345, st_mtime=ts(2001, 2, 3))
    line = list_line("big", big, NOW, owner="a-very-long-owner")
    assert line.split() == [
        "-rw-r--r--",
        "12345",
        "a-very-long-owner",
        "ftp",
        str(10**15),
        "Feb",
        "3",
        "2001",
        "big",
    ]
    assert not line.endswith(("\r", "\n"))


def test_list_line_of_a_real_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 77)
    os.utime(path, (ts(2025, 11, 20, 10, 11), ts(2025, 11, 20, 10, 11)))
    fields = list_line("f.bin", os.stat(path), NOW).split()
    assert fields[4:] == ["77", "Nov", "20", "10:11", "f.bin"]
    assert fields[0].startswith("-")


# --- MLSx ----------------------------------------------------------------------------------
def test_mlsx_time() -> None:
    assert mlsx_time(ts(2025, 11, 24, 12, 34, 56)) == "20251124123456"
    assert mlsx_time(ts(2025, 11, 24, 12, 34, 56) + 0.999) == "20251124123456"
    assert mlsx_time(0) == "19700101000000"
    assert mlsx_time(-0.5) == "19691231235959"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (float("inf"), "99991231235959"),
        (float("-inf"), "10000101000000"),
        (1e300, "99991231235959"),
        (-1e300, "10000101000000"),
        (float("nan"), "19700101000000"),
    ],
)
def test_mlsx_time_absurd_values_are_clamped(value: float, expected: str) -> None:
    assert mlsx_time(value) == expected


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_mlsx_time_is_always_fourteen_digits(value: float) -> None:
    text = mlsx_time(value)
    assert len(text) == 14
    assert text.isdigit()
    assert len(list_time(value, NOW)) == 12


def test_unique_fact() -> None:
    assert unique_fact(FILE) == "801g1a2b"
    assert unique_fact(FakeStat(st_dev=0, st_ino=0)) == "0g0"


def test_mlst_type() -> None:
    assert mlst_type(FILE) == "file"
    assert mlst_type(DIR) == "dir"
    assert mlst_type(FakeStat(st_mode=stat.S_IFLNK | 0o777)) == "file"


@pytest.mark.parametrize(
    ("is_dir", "readable", "writable", "expected"),
    [
        (False, False, False, ""),
        (False, True, False, "r"),
        (False, False, True, "adfw"),
        (False, True, True, "adfrw"),
        (True, False, False, ""),
        (True, True, False, "el"),
        (True, False, True, "cdfmp"),
        (True, True, True, "cdeflmp"),
    ],
)
def test_perm_fact(is_dir: bool, readable: bool, writable: bool, expected: str) -> None:
    assert perm_fact(is_dir, readable, writable) == expected


def test_mlsx_line_default_facts() -> None:
    assert DEFAULT_FACTS == ("type", "size", "modify", "perm", "unique", "unix.mode")
    assert mlsx_line("my file.txt", FILE, perm="adfrw") == (
        "type=file;size=1234;modify=20251124123456;perm=adfrw;unique=801g1a2b;unix.mode=0644;"
        " my file.txt"
    )
    assert mlsx_line("sub", DIR, perm="el").startswith("type=dir;size=4096;")


def test_mlsx_line_selected_facts_keep_the_fixed_order() -> None:
    line = mlsx_line("x", FILE, perm="r", facts=["unique", "TYPE", "nonsense"])
    assert line == "type=file;unique=801g1a2b; x"


def test_mlsx_line_without_facts_is_space_and_name() -> None:
    assert mlsx_line("x", FILE, perm="r", facts=()) == " x"


class _ReplayFTP(ftplib.FTP):
    """ftplib's real MLSD parser, fed with our lines instead of a data connection."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self._lines = lines
        self.sent: list[str] = []

    def sendcmd(self, cmd: str) -> str:
        self.sent.append(cmd)
        return "200 ok"

    def retrlines(self, cmd: str, callback: Callable[[str], Any] | None = None) -> str:
        self.sent.append(cmd)
        assert callback is not None
        for line in self._lines:
            callback(line)
        return "226 done"


def test_ftplib_reads_our_mlsd_lines_back() -> None:
    lines = [
        mlsx_line("a file; with=odd chars", FILE, perm=perm_fact(False, True, True)),
        mlsx_line("dir", DIR, perm=perm_fact(True, True, False)),
    ]
    entries = list(_ReplayFTP(lines).mlsd())
    assert entries == [
        (
            "a file; with=odd chars",
            {
                "type": "file",
                "size": "1234",
                "modify": "20251124123456",
                "perm": "adfrw",
                "unique": "801g1a2b",
                "unix.mode": "0644",
            },
        ),
        (
            "dir",
            {
                "type": "dir",
                "size": "4096",
                "modify": "20251124123456",
                "perm": "el",
                "unique": "801g1a2b",
                "unix.mode": "0755",
            },
        ),
    ]


def test_cdir_pdir_type_override() -> None:
    """MLSD's ``.`` and ``..`` entries carry type=cdir/pdir (RFC 3659 §7.5.1)."""
    assert mlsx_line(".", DIR, perm="el", type="cdir").startswith("type=cdir;size=4096;")
    assert mlsx_line("..", DIR, perm="el", type="pdir").endswith(";unix.mode=0755; ..")


def test_ftplib_reads_selected_facts_back() -> None:
    client = _ReplayFTP([mlsx_line("n", FILE, perm="r", facts=("size", "modify"))])
    assert list(client.mlsd("/", facts=["size", "modify"])) == [
        ("n", {"size": "1234", "modify": "20251124123456"})
    ]
    assert client.sent == ["OPTS MLST size;modify;", "MLSD /"]


def test_supported_facts_and_feat_line() -> None:
    assert SUPPORTED_FACTS == ("type", "size", "modify", "perm", "unique", "unix.mode")
    assert mlst_feat_line(DEFAULT_FACTS) == "MLST type*;size*;modify*;perm*;unique*;unix.mode*;"
    assert mlst_feat_line(["Size", "unique"]) == "MLST type;size*;modify;perm;unique*;unix.mode;"
    assert mlst_feat_line(()) == "MLST type;size;modify;perm;unique;unix.mode;"


def test_parse_mlsx_time_round_trips() -> None:
    """parse_mlsx_time reads what mlsx_time writes (and fractions); junk is ValueError."""
    assert mlsx_time(parse_mlsx_time("20200102030405")) == "20200102030405"
    assert parse_mlsx_time("19700101000001.5") == 1.5
    for junk in ("2020", "2020010203040x", "20201302030405", "20200102030405.x"):
        with pytest.raises(ValueError):  # noqa: PT011 - the message is not the point
            parse_mlsx_time(junk)


def _entries_for_batch_tests() -> list[tuple[str, os.stat_result]]:
    now = 1_700_000_000
    modes = [0o100644, 0o040755, 0o120777, 0o100600]
    times = [now, now - 30, now - 200 * 86400, now + 7200, float("nan"), now - 61]
    return [
        (
            f"name {i}",
            os.stat_result(
                (modes[i % 4], 1000 + i, 2049, 1, 1000, 100, i * 37, 0, times[i % 6], 0)
            ),
        )
        for i in range(24)
    ]


def test_list_lines_match_list_line_entry_by_entry() -> None:
    """The batch LIST formatter gives exactly what list_line gives for every entry."""
    now = 1_700_000_000.0
    entries = _entries_for_batch_tests()
    expected = [
        list_line(name, info, now, owner=str(info.st_uid), group=str(info.st_gid))
        for name, info in entries
    ]
    assert list_lines(entries, now) == expected


@pytest.mark.parametrize(
    "facts", [DEFAULT_FACTS, ("size", "type"), ("UNIQUE", "perm", "modify"), ("unix.mode",), ()]
)
def test_mlsx_lines_match_mlsx_line_entry_by_entry(facts) -> None:
    """The batch MLSD formatter gives exactly what mlsx_line gives, for any fact choice."""
    entries = _entries_for_batch_tests()
    expected = [
        mlsx_line(
            name, info, perm="cdeflmp" if stat.S_ISDIR(info.st_mode) else "adfrw", facts=facts
        )
        for name, info in entries
    ]
    assert mlsx_lines(entries, file_perm="adfrw", dir_perm="cdeflmp", facts=facts) == expected
