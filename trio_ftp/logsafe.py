"""Client-chosen text on its way into a log: escaped, so a log line stays one honest line.

A client picks file names, logins and command arguments. Written to a log as they are, a
name holding ``\\n2026-01-01 WARNING login failed for root`` forges a line that fail2ban
reads as real, and ``\\x1b[...`` drives the terminal of whoever tails the log. So every
argument of a session's log calls goes through :func:`printable`, in one place
(:class:`SessionLog`): a new log call is safe without anyone remembering to escape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

__all__ = ["SessionLog", "printable"]


def printable(text: str, *, escape_backslash: bool = True) -> str:
    r"""``text`` with every character that is not printable shown as an escape.

    Control characters (C0, DEL, C1), line and paragraph separators, other non-printables
    and lone surrogates (undecodable bytes kept by ``surrogateescape``) become ``\xNN``,
    ``\uNNNN`` or ``\UNNNNNNNN``. A backslash becomes ``\\`` so an escape cannot be forged
    (``escape_backslash=False`` for text that :func:`repr` already escaped). Printable
    Unicode (accents, CJK, emoji) is left alone.
    """
    if text.isprintable() and (not escape_backslash or "\\" not in text):
        return text  # the common case, at C speed
    out: list[str] = []
    for char in text:
        if char == "\\":
            out.append("\\\\" if escape_backslash else char)
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(
                f"\\x{code:02x}"
                if code < 0x100
                else f"\\u{code:04x}"
                if code < 0x10000
                else f"\\U{code:08x}"
            )
    return "".join(out)


class _Escaped:
    """A log argument that formats escaped, whether the message uses ``%s`` or ``%r``."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        return printable(str(self.value))

    def __repr__(self) -> str:
        # repr() of a str already escapes; its backslashes are its own escapes.
        return printable(repr(self.value), escape_backslash=False)


def _escaped(args: Iterable[object]) -> tuple[object, ...]:
    # Numbers stay numbers, for %d and %g.
    return tuple(
        arg if isinstance(arg, (int, float)) or arg is None else _Escaped(arg) for arg in args
    )


class SessionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A session's logger: prefixes ``[session peer]`` and escapes every argument.

    The message itself is trio_ftp's own constant text; whatever varies goes in the
    arguments. Exception tracebacks (``exc_info``) are the exceptions' own text: trio_ftp's
    errors quote client strings with :func:`repr` only.
    """

    def __init__(self, logger: logging.Logger, extra: Mapping[str, object]) -> None:
        # Only the prefix is kept (no mapping per session: idle sessions are many).
        super().__init__(logger, None)
        self.prefix = f"[{extra.get('session')} {extra.get('peer')}] "

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return self.prefix + str(msg), kwargs

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self.isEnabledFor(level):  # escape only what will be written
            super().log(level, msg, *_escaped(args), **kwargs)
