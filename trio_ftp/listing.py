"""Directory listing lines: ``LIST`` (``ls -l`` style), ``MLSD``/``MLST`` facts, ``MDTM`` times.

Pure functions of a stat result and a clock value, so listings do not depend on the
process locale (no ``setlocale``/``strftime``), on the local time zone, or on any I/O,
and so every client-visible format is testable in isolation.
"""

from __future__ import annotations

import functools
import math
import stat
import time
from collections.abc import Collection, Iterable
from datetime import datetime, timezone
from typing import Protocol

__all__ = [
    "DEFAULT_FACTS",
    "MONTHS",
    "SUPPORTED_FACTS",
    "StatLike",
    "list_line",
    "list_lines",
    "list_time",
    "mlst_feat_line",
    "mlst_type",
    "mlsx_line",
    "mlsx_lines",
    "mlsx_time",
    "mode_string",
    "parse_mlsx_time",
    "perm_fact",
    "unique_fact",
]

#: English month abbreviations, as ``ls -l`` in the C locale prints them.
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

#: Facts this server can give, in the order they appear in a facts line (RFC 3659 §7.5).
SUPPORTED_FACTS = ("type", "size", "modify", "perm", "unique", "unix.mode")
#: Facts given until the client picks others with ``OPTS MLST`` (RFC 3659 §7.9).
DEFAULT_FACTS = SUPPORTED_FACTS

#: ``ls -l`` shows the time of day for files modified less than this long ago ...
RECENT_SECONDS = 180 * 86400
#: ... and not more than this far in the future; otherwise the year.
FUTURE_SLACK_SECONDS = 3600

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MIN_TIME = datetime(1000, 1, 1, tzinfo=timezone.utc)  # keeps YYYY at four digits
_MAX_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)


class StatLike(Protocol):
    """What listings read from a stat result; ``os.stat_result`` satisfies it."""

    @property
    def st_mode(self) -> int: ...
    @property
    def st_size(self) -> int: ...
    @property
    def st_mtime(self) -> float: ...
    @property
    def st_nlink(self) -> int: ...
    @property
    def st_ino(self) -> int: ...
    @property
    def st_dev(self) -> int: ...
    @property
    def st_uid(self) -> int: ...
    @property
    def st_gid(self) -> int: ...


_MIN_SECONDS = math.floor((_MIN_TIME - _EPOCH).total_seconds())
_MAX_SECONDS = math.floor((_MAX_TIME - _EPOCH).total_seconds())


def _utc(timestamp: float) -> time.struct_time:
    """The UTC time of a POSIX timestamp, floored to the second and clamped to years
    1000-9999 (file systems can hold absurd mtimes; listings must not crash on them)."""
    if math.isnan(timestamp):
        return time.gmtime(0)
    if math.isinf(timestamp):
        return time.gmtime(_MAX_SECONDS if timestamp > 0 else _MIN_SECONDS)
    return time.gmtime(min(max(math.floor(timestamp), _MIN_SECONDS), _MAX_SECONDS))


_filemode = functools.lru_cache(maxsize=4096)(stat.filemode)


def mode_string(st_mode: int) -> str:
    """The ten-character mode column of ``ls -l``.

    Args:
        st_mode: ``st_mode`` of a stat result.

    Returns:
        e.g. ``"drwxr-xr-x"``, ``"-rwsr-Sr-T"`` (setuid/setgid/sticky as ``s S t T``).
    """
    # stat.filemode is the stdlib's locale-free implementation of exactly this column;
    # a directory holds few distinct modes, so listings look most of them up.
    return _filemode(st_mode)


def list_time(mtime: float, now: float) -> str:
    """The twelve-character date column of ``ls -l``, in UTC and English.

    Args:
        mtime: the modification time (POSIX timestamp).
        now: the current time (POSIX timestamp).

    Returns:
        ``"Nov 24 12:34"`` when ``mtime`` is less than 180 days old and at most an hour
        in the future, else ``"Nov 24  2025"``; the day is space-padded (``"Nov  4"``).
    """
    when = _utc(mtime)
    head = f"{MONTHS[when.tm_mon - 1]} {when.tm_mday:2d}"
    if now - RECENT_SECONDS < mtime <= now + FUTURE_SLACK_SECONDS:
        return f"{head} {when.tm_hour:02d}:{when.tm_min:02d}"
    return f"{head} {when.tm_year:>5d}"


def list_line(
    name: str, st: StatLike, now: float, *, owner: str = "ftp", group: str = "ftp"
) -> str:
    """One ``LIST`` line, laid out like ``ls -l`` so ftplib, curl and lftp parse it.

    Layout: mode (10 chars), links right-aligned in 4, owner and group left-aligned in 8,
    size right-aligned in 12, the 12-character date of :func:`list_time`, then the name;
    fields separated by one space. Longer values widen their field (never truncated).

    Args:
        name: the file name, shown verbatim (the caller decides what to do with names
            that contain CR or LF).
        st: its stat result.
        now: the current time, for :func:`list_time`.
        owner: the owner column.
        group: the group column.

    Returns:
        e.g. ``"-rw-r--r--    1 ftp      ftp              1234 Nov 24 12:34 name"``,
        without a line terminator.
    """
    return (
        f"{mode_string(st.st_mode)} {st.st_nlink:>4d} {owner:<8} {group:<8} "
        f"{st.st_size:>12d} {list_time(st.st_mtime, now)} {name}"
    )


def list_lines(entries: Iterable[tuple[str, StatLike]], now: float) -> list[str]:
    """:func:`list_line` for each ``(name, stat)``, owner and group as numeric ids.

    For listings of many files, what files of one directory share is formatted once: the
    columns from mode to group, and the date per minute (recent files) or day (older).
    """
    heads: dict[tuple[int, int, int, int], str] = {}
    recent_dates: dict[float, str] = {}
    old_dates: dict[float, str] = {}
    earliest, latest = now - RECENT_SECONDS, now + FUTURE_SLACK_SECONDS
    lines = []
    for name, st in entries:
        key = (st.st_mode, st.st_nlink, st.st_uid, st.st_gid)
        head = heads.get(key)
        if head is None:
            head = heads[key] = (
                f"{_filemode(st.st_mode)} {st.st_nlink:>4d} {st.st_uid!s:<8} {st.st_gid!s:<8} "
            )
        mtime = st.st_mtime
        if earliest < mtime <= latest:
            date = recent_dates.get(mtime // 60)
            if date is None:
                date = recent_dates[mtime // 60] = list_time(mtime, now)
        elif math.isfinite(mtime):
            date = old_dates.get(mtime // 86400)
            if date is None:
                date = old_dates[mtime // 86400] = list_time(mtime, now)
        else:
            date = list_time(mtime, now)
        lines.append(f"{head}{st.st_size:>12d} {date} {name}")
    return lines


def mlsx_time(timestamp: float) -> str:
    """A ``time-val`` of RFC 3659 §2.3 (``YYYYMMDDHHMMSS``, UTC, whole seconds).

    Used for the ``modify`` fact and the ``MDTM`` reply (RFC 3659 §3).

    Args:
        timestamp: a POSIX timestamp.

    Returns:
        e.g. ``"20251124123456"``.
    """
    when = _utc(timestamp)
    return (
        f"{when.tm_year:04d}{when.tm_mon:02d}{when.tm_mday:02d}"
        f"{when.tm_hour:02d}{when.tm_min:02d}{when.tm_sec:02d}"
    )


def parse_mlsx_time(text: str) -> float:
    """Read a ``time-val`` (RFC 3659 §2.3: ``YYYYMMDDHHMMSS[.sss]``, UTC) as epoch seconds.

    Raises:
        ValueError: not a valid time-val.
    """
    whole, _, fraction = text.partition(".")
    if len(whole) != 14 or not whole.isdigit() or (fraction and not fraction.isdigit()):
        raise ValueError(f"not a YYYYMMDDHHMMSS time: {text!r}")
    moment = datetime.strptime(whole, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
    return moment.timestamp() + (float(f"0.{fraction}") if fraction else 0.0)


def unique_fact(st: StatLike) -> str:
    """The ``unique`` fact (RFC 3659 §7.5.2): device and inode, hex, joined by ``g``."""
    return f"{st.st_dev:x}g{st.st_ino:x}"


def mlst_type(st: StatLike) -> str:
    """The ``type`` fact (RFC 3659 §7.5.1): ``"dir"`` for directories, else ``"file"``."""
    return "dir" if stat.S_ISDIR(st.st_mode) else "file"


def perm_fact(is_dir: bool, readable: bool, writable: bool, appendable: bool = True) -> str:
    """The ``perm`` fact (RFC 3659 §7.5.5) for what this user may do, letters sorted.

    Files: ``r`` (RETR) if readable; ``a`` (APPE), ``d`` (DELE), ``f`` (RNFR), ``w``
    (STOR) if writable. Directories: ``e`` (CWD), ``l`` (LIST) if readable; ``c``
    (create files), ``d`` (RMD), ``f`` (RNFR), ``m`` (MKD), ``p`` (purge) if writable.

    Args:
        is_dir: whether the path is a directory.
        readable: whether the user may read it.
        writable: whether the user may change it.
        appendable: whether the backend can append to a file (an object store cannot:
            no ``a``).

    Returns:
        e.g. ``"adfrw"`` or ``"cdeflmp"``; ``""`` when nothing is allowed.
    """
    letters = ""
    if readable:
        letters += "el" if is_dir else "r"
    if writable:
        letters += "cdfmp" if is_dir else "adfw" if appendable else "dfw"
    return "".join(sorted(letters))


def mlsx_line(
    name: str,
    st: StatLike,
    *,
    perm: str,
    facts: Collection[str] = DEFAULT_FACTS,
    type: str | None = None,
) -> str:
    """One ``MLSD`` line, or the entry line of ``MLST`` (RFC 3659 §7.2).

    ``fact=value;`` for each selected fact, in :data:`SUPPORTED_FACTS` order, then one
    space, then the name (which may hold any character but CR/LF, spaces included).

    Args:
        name: the entry's name (MLSD) or path (MLST).
        st: its stat result.
        perm: the ``perm`` value, from :func:`perm_fact`.
        facts: which facts to give (case-insensitive); unknown names are ignored.
        type: overrides the ``type`` fact (``"cdir"``/``"pdir"`` for MLSD's ``.``/``..``).

    Returns:
        e.g. ``"type=file;size=123;modify=20251124123456;perm=adfrw;unique=801g1a2b; name"``,
        without a line terminator (and without the leading space of an MLST reply line).
    """
    wanted = _wanted(facts if isinstance(facts, tuple) else tuple(facts))
    parts = []
    for fact in wanted:
        if fact == "type":
            value = type or mlst_type(st)
        elif fact == "size":
            value = str(st.st_size)
        elif fact == "modify":
            value = mlsx_time(st.st_mtime)
        elif fact == "perm":
            value = perm
        elif fact == "unique":
            value = unique_fact(st)
        else:  # unix.mode
            value = f"0{stat.S_IMODE(st.st_mode):o}"
        parts.append(f"{fact}={value};")
    parts.append(" ")
    parts.append(name)
    return "".join(parts)


@functools.lru_cache(maxsize=64)
def _wanted(facts: tuple[str, ...]) -> tuple[str, ...]:
    """The supported facts among ``facts`` (any case), in facts-line order."""
    chosen = {fact.lower() for fact in facts}
    return tuple(fact for fact in SUPPORTED_FACTS if fact in chosen)


def mlsx_lines(
    entries: Iterable[tuple[str, StatLike]],
    *,
    file_perm: str,
    dir_perm: str,
    facts: Collection[str] = DEFAULT_FACTS,
) -> list[str]:
    """:func:`mlsx_line` for each ``(name, stat)`` of a directory whose entries share one
    permission (``file_perm`` for files, ``dir_perm`` for directories).

    For listings of many files: the line layout is made once (a format template of the
    selected facts), and each ``modify`` value once per distinct second.
    """
    template = _mlsx_template(_wanted(facts if isinstance(facts, tuple) else tuple(facts)))
    times: dict[float, str] = {}
    lines = []
    for name, st in entries:
        is_dir = stat.S_ISDIR(st.st_mode)
        second = st.st_mtime // 1  # the value shows whole seconds
        modify = times.get(second)
        if modify is None:
            modify = times[second] = mlsx_time(second)
        lines.append(
            template.format(
                "dir" if is_dir else "file",
                st.st_size,
                modify,
                dir_perm if is_dir else file_perm,
                st.st_dev,
                st.st_ino,
                stat.S_IMODE(st.st_mode),
            )
            + name
        )
    return lines


@functools.lru_cache(maxsize=64)
def _mlsx_template(wanted: tuple[str, ...]) -> str:
    """A :meth:`str.format` template of a facts line without its name; the arguments are
    type, size, modify, perm, st_dev, st_ino, permission bits."""
    fields = {
        "type": "type={0};",
        "size": "size={1};",
        "modify": "modify={2};",
        "perm": "perm={3};",
        "unique": "unique={4:x}g{5:x};",
        "unix.mode": "unix.mode=0{6:o};",
    }
    return "".join(fields[fact] for fact in wanted) + " "


def mlst_feat_line(selected: Collection[str]) -> str:
    """The ``MLST`` line of the ``FEAT`` reply (RFC 3659 §7.8), ``*`` on selected facts.

    Args:
        selected: the facts currently selected (case-insensitive).

    Returns:
        e.g. ``"MLST type*;size*;modify*;perm;unique;"``.
    """
    chosen = {fact.lower() for fact in selected}
    return "MLST " + "".join(f"{fact}{'*' if fact in chosen else ''};" for fact in SUPPORTED_FACTS)
