"""Control-channel framing: bytes in, :class:`Command` objects out; replies back to bytes.

Kept free of I/O so the protocol rules (RFC 959 §4, Telnet filtering from RFC 854, line
limits) can be tested byte by byte, and so a hostile client can neither grow our memory
without bound nor forge reply lines through a file name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import LineTooLong, ProtocolError

__all__ = [
    "MAX_LINE_LENGTH",
    "Command",
    "CommandDecoder",
    "encode_reply",
    "has_surrogates",
    "is_http_request",
    "quote_path",
]

#: Longest command line accepted, in bytes, not counting the CR LF / LF terminator.
MAX_LINE_LENGTH = 4096

#: Verbs whose argument is a secret and never appears in ``repr``/``str`` (or logs).
SECRET_VERBS = frozenset({"PASS", "ACCT"})

_ASCII_UPPER_STR = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")

# RFC 854 Telnet command bytes.
_IAC = 0xFF
_SE, _SB = 0xF0, 0xFA  # F0..FA: two-byte commands (IP = F4, DM = F2, ...).
_WILL, _DONT = 0xFB, 0xFE  # FB..FE: option negotiation, three bytes.

# Telnet filter states (what the previous bytes left us in the middle of).
_DATA, _AFTER_IAC, _AFTER_OPTION_VERB = 0, 1, 2

# Reply sanitising: CR, LF and NUL would let text end a reply line early (RFC 959 §4.2).
_REPLY_UNSAFE = str.maketrans({"\r": " ", "\n": " ", "\0": " "})


@dataclass(frozen=True, repr=False)
class Command:
    """One command line from the client (RFC 959 §4.1 / §5.3).

    Attributes:
        verb: the command name, ASCII upper-cased (``"RETR"``).
        arg: everything after the first space, verbatim: leading, trailing and repeated
            spaces are part of it, because they can be part of a file name.
    """

    verb: str
    arg: str

    @classmethod
    def parse(cls, line: str) -> Command:
        """Split one decoded line (without its terminator) into verb and argument.

        Args:
            line: the command line, e.g. ``"STOR  name with spaces "``.

        Returns:
            The command; ``arg`` is ``""`` when the line has no space.

        Raises:
            ProtocolError: ``500`` if the line has no verb (it starts with a space).
        """
        if line.endswith("\r"):
            line = line[:-1]
        verb, _, arg = line.partition(" ")
        if not verb:
            raise ProtocolError("500", "syntax error, command unrecognized")
        return cls(verb.translate(_ASCII_UPPER_STR), arg)

    def _shown_arg(self) -> str:
        if self.verb.translate(_ASCII_UPPER_STR) in SECRET_VERBS:
            return "****"
        return self.arg

    def __repr__(self) -> str:
        return f"Command(verb={self.verb!r}, arg={self._shown_arg()!r})"

    def __str__(self) -> str:
        arg = self._shown_arg()
        return f"{self.verb} {arg}" if arg else self.verb


class CommandDecoder:
    """Incremental decoder of the control connection.

    Feed it whatever ``receive_some`` returned; take commands out with
    :meth:`next_command` until it returns ``None``, then feed again. Telnet sequences are
    removed as the bytes arrive (so a sequence split between two reads is still removed),
    and lines end only at CR LF (RFC 959 §4.1): a bare CR or LF inside a line makes the
    whole line a ``501``, so it can never split one command into two.

    Memory is bounded: the unterminated tail of the buffer never exceeds
    ``max_line_length + 1`` bytes (the ``+ 1`` is a CR waiting for its LF), so with the
    feed/drain loop above the buffer never holds more than that plus one chunk, plus one
    byte: an ``IAC`` ending a chunk is held until the next one shows it was data.

    Args:
        encoding: how command lines are decoded (``"utf-8"`` per RFC 2640, or e.g.
            ``"latin-1"``).
        max_line_length: the longest accepted line in bytes, terminator excluded.
    """

    __slots__ = (
        "_buffer",
        "_discard_cr",
        "_discarding",
        "_tail_start",
        "_telnet_state",
        "encoding",
        "max_line_length",
    )

    def __init__(self, encoding: str = "utf-8", max_line_length: int = MAX_LINE_LENGTH) -> None:
        if max_line_length < 1:
            raise ValueError("max_line_length must be positive")
        self.encoding = encoding
        self.max_line_length = max_line_length
        self._buffer = bytearray()
        # Index in _buffer where the unterminated tail starts (just after the last CR LF);
        # 0 means no complete line is buffered, so next_command need not search at all.
        self._tail_start = 0
        # After LineTooLong, the rest of the offending line is dropped up to its CR LF
        # (_discard_cr: the last byte dropped was a CR, so an LF next ends the line).
        self._discarding = False
        self._discard_cr = False
        self._telnet_state = _DATA

    @property
    def buffered(self) -> int:
        """How many (Telnet-filtered) bytes are held, complete lines included."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        """Append bytes received from the client.

        Args:
            data: the bytes, in any chunking.

        Raises:
            LineTooLong: the unterminated line now exceeds ``max_line_length``. Its bytes
                are dropped (up to its CR LF, even in later feeds); complete lines before it
                stay available from :meth:`next_command`.
        """
        clean = self._strip_telnet(data)
        if not clean:
            return
        if self._discarding:
            scan = (b"\r" if self._discard_cr else b"") + clean
            end = scan.find(b"\r\n")
            if end < 0:
                self._discard_cr = scan.endswith(b"\r")
                return
            self._discarding = False
            clean = scan[end + 2 :]
        old_length = len(self._buffer)
        self._buffer += clean
        # A CR LF may straddle the old end of the buffer and the new bytes.
        last = self._buffer.rfind(b"\r\n", max(self._tail_start, old_length - 1))
        if last >= 0:
            self._tail_start = last + 2
        tail = len(self._buffer) - self._tail_start
        limit = self.max_line_length
        # One extra byte is allowed if it is the CR of a CR LF still to come.
        if tail > limit + 1 or (tail == limit + 1 and not self._buffer.endswith(b"\r")):
            self._discard_cr = self._buffer.endswith(b"\r")
            del self._buffer[self._tail_start :]
            self._discarding = True
            raise LineTooLong(limit)

    def next_command(self) -> Command | None:
        """Take the next complete command out of the buffer.

        Returns:
            The command, or ``None`` when no complete non-blank line is buffered.

        Raises:
            ProtocolError: ``501`` for a line that does not decode in ``encoding`` or
                contains NUL, a bare CR or a bare LF; ``500`` for a line without a verb.
                The line is consumed, so the next call goes on with the following line.
            LineTooLong: a complete line longer than ``max_line_length`` (also consumed).
        """
        while self._tail_start:
            end = self._buffer.find(b"\r\n", 0, self._tail_start)
            raw = bytes(self._buffer[:end])
            # bytearray deletion from the front is amortised O(1) in CPython.
            del self._buffer[: end + 2]
            self._tail_start -= end + 2
            if len(raw) > self.max_line_length:
                raise LineTooLong(self.max_line_length)
            if not raw.strip():
                continue  # blank line: tolerated, ignored
            if b"\0" in raw:
                raise ProtocolError("501", "NUL byte in command line")
            if b"\r" in raw or b"\n" in raw:
                # Only CR LF ends a command: a line smuggling a second command behind a
                # bare CR or LF is refused whole, never split or half-run.
                raise ProtocolError("501", "bare CR or LF in command line")
            try:
                line = raw.decode(self.encoding)
            except UnicodeDecodeError:
                # A file name the client got from a listing may hold bytes that are not
                # valid in the encoding: keep them as surrogate escapes (PEP 383) so they
                # round-trip to the same bytes; the session decides whether to accept them.
                line = raw.decode(self.encoding, "surrogateescape")
                command = Command.parse(line)
                if has_surrogates(command.verb):
                    raise ProtocolError(
                        "501", f"command line is not valid {self.encoding}"
                    ) from None
                return command
            return Command.parse(line)
        return None

    def _strip_telnet(self, data: bytes) -> bytes:
        """Remove RFC 854 Telnet sequences, remembering a sequence cut by the chunking.

        ``IAC IAC`` is a literal 0xFF; ``IAC WILL|WONT|DO|DONT <option>`` and
        ``IAC <F0..FA>`` (e.g. ``IAC IP IAC DM`` before ``ABOR``, RFC 959 §4.1.3) are
        dropped. An IAC followed by any other byte is not Telnet at all: both bytes are
        kept as data (lenient towards clients that send a raw 0xFF in a file name).
        """
        state = self._telnet_state
        if state == _DATA and _IAC not in data:
            return data  # fast path: nearly every chunk
        out = bytearray()
        start = 0  # start of the pending run of plain data bytes
        i = 0
        n = len(data)
        while i < n:
            if state == _DATA:
                iac = data.find(b"\xff", i)
                if iac < 0:
                    break
                out += data[start:iac]
                i = iac + 1
                state = _AFTER_IAC
                start = i
                continue
            byte = data[i]
            i += 1
            if state == _AFTER_OPTION_VERB:
                state = _DATA  # the option byte itself, whatever it is
            elif byte == _IAC:
                out.append(_IAC)
                state = _DATA
            elif _WILL <= byte <= _DONT:
                state = _AFTER_OPTION_VERB
            elif _SE <= byte <= _SB:
                state = _DATA
            else:
                out.append(_IAC)
                out.append(byte)
                state = _DATA
            start = i
        if state == _DATA:
            out += data[start:]
        self._telnet_state = state
        return bytes(out)


def encode_reply(code: str, lines: str | Sequence[str], encoding: str = "utf-8") -> bytes:
    """Encode one reply, single- or multi-line (RFC 959 §4.2).

    A multi-line reply is ``code-first``, then the middle lines each starting with a space
    (so none can look like the end line, RFC 959 §4.2 and RFC 2389 §3.2 for FEAT), then
    ``code last``. CR, LF and NUL in the text become spaces, so a file name cannot end a
    reply line early and forge another reply.

    Args:
        code: three digits, e.g. ``"250"``.
        lines: one line of text, or a sequence of lines (empty means an empty text).
        encoding: the reply encoding; unencodable characters become ``?``.

    Returns:
        The reply bytes, ending with CR LF.

    Raises:
        ValueError: ``code`` is not three ASCII digits.
    """
    if len(code) != 3 or not (code.isascii() and code.isdigit()):
        raise ValueError(f"reply code must be three digits, got {code!r}")
    if isinstance(lines, str):  # nearly every reply: one line
        return f"{code} {lines.translate(_REPLY_UNSAFE)}\r\n".encode(encoding, errors="replace")
    texts = [text.translate(_REPLY_UNSAFE) for text in lines] or [""]
    if len(texts) == 1:
        out = [f"{code} {texts[0]}"]
    else:
        out = [f"{code}-{texts[0]}"]
        out.extend(text if text.startswith(" ") else " " + text for text in texts[1:-1])
        out.append(f"{code} {texts[-1]}")
    return "".join(line + "\r\n" for line in out).encode(encoding, errors="replace")


_HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "CONNECT", "TRACE", "PATCH"}
)


def is_http_request(command: Command) -> bool:
    """True for an HTTP request line (``GET / HTTP/1.1``): a browser, a proxy probe, or a
    cross-protocol attack whose next lines would each be run as an FTP command."""
    target, _, version = command.arg.rpartition(" ")
    return command.verb in _HTTP_METHODS and bool(target) and version.startswith("HTTP/")


def has_surrogates(text: str) -> bool:
    """True if ``text`` holds surrogate escapes: bytes that were not valid in the encoding."""
    return any("\udc80" <= char <= "\udcff" for char in text)


def quote_path(path: str) -> str:
    """Quote a path for a ``257`` reply (RFC 959 Appendix II): ``"`` doubled, then wrapped.

    Args:
        path: the virtual path, e.g. ``/say"hi``.

    Returns:
        The quoted path, ``"/say""hi"`` for the example above.
    """
    return '"' + path.replace('"', '""') + '"'
