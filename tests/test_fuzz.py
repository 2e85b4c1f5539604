"""Hypothesis fuzzing of the control-channel codec and of the session state machine.

The codec tests feed arbitrary bytes (CR, LF, NUL, Telnet IAC sequences, overlong lines,
invalid UTF-8) in arbitrary chunkings to :class:`CommandDecoder` and arbitrary texts to
:func:`encode_reply`. The session tests drive whole sessions of a
``Server(path_io_factory=MemoryPathIO)`` over memory streams with generated command
sequences (every known verb, unknown verbs, hostile arguments, before and after login), with
real loopback data connections after PASV/EPSV so transfers, ABOR, STAT and resets
mid-transfer happen too, and check every reply and the state the session leaves behind.

Sized to run in well under a minute; ``TRIO_FTP_FUZZ_SCALE=20`` multiplies every test's
number of examples for a deeper search.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, Phase, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from memory_client import start_memory_session

from trio_ftp import MemoryPathIO, Permission, Server, User
from trio_ftp.codec import MAX_LINE_LENGTH, Command, CommandDecoder, encode_reply
from trio_ftp.errors import LineTooLong, ProtocolError

# Hypothesis' report of a failure touches mypy_extensions.TypedDict (deprecated), which
# the project's filterwarnings=error would turn into an INTERNALERROR hiding the report.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)


def examples(count: int) -> int:
    """``count`` scaled by $TRIO_FTP_FUZZ_SCALE (default 1): raise it for a deeper run."""
    return max(1, int(count * float(os.environ.get("TRIO_FTP_FUZZ_SCALE", "1"))))


# --- shared: what a well-formed reply is (RFC 959 §4.2) ----------------------------------

_FIRST_LINE = re.compile(rb"[1-5][0-9][0-9][ -]")


def check_reply_lines(lines: Sequence[bytes]) -> tuple[str, list[bytes]]:
    """Check one reply's lines (terminators already removed); return ``(code, texts)``.

    Well-formed: the first line is three digits 1xx-5xx then a space (single line) or a dash
    (multi-line); a multi-line reply ends with its first line that starts with the same code
    and a space, and every middle line starts with a space (encode_reply's promise, so no
    middle line can be read as an end line). No line holds a CR or an LF.
    """
    assert lines, "empty reply"
    for line in lines:
        assert b"\r" not in line, f"bare CR in reply line {line!r}"
        assert b"\n" not in line, f"bare LF in reply line {line!r}"
    first = lines[0]
    assert _FIRST_LINE.match(first), f"malformed first reply line {first!r}"
    code = first[:3]
    if first[3:4] == b" ":
        assert len(lines) == 1, f"single-line reply followed by more lines: {lines!r}"
        return code.decode(), [first[4:]]
    last = lines[-1]
    assert last.startswith(code + b" "), f"multi-line reply not ended by '{code!r} ': {lines!r}"
    for middle in lines[1:-1]:
        assert middle.startswith(b" "), f"middle line of a multi-line reply: {middle!r}"
    return code.decode(), [first[4:], *lines[1:-1], last[4:]]


# --- CommandDecoder --------------------------------------------------------------------------

#: Byte sequences the decoder has special rules for, to be mixed with random bytes.
TOKENS = [
    b"\r\n",
    b"\r",
    b"\n",
    b"\0",
    b" ",
    b"\xff",  # IAC alone (split sequences)
    b"\xff\xff",  # a literal 0xFF
    b"\xff\xf4\xff\xf2",  # IAC IP IAC DM (before ABOR)
    b"\xff\xfb",  # IAC WILL, option byte to come
    b"\xff\xfd\x01",
    b"\xff\xfa",
    b"\xff\x41",  # IAC + a non-Telnet byte: kept as data
    b"NOOP",
    b"noop",
    b"RETR a b ",
    b"\xc3\xa9",  # valid UTF-8
    b"\xc3",  # truncated UTF-8
    b"\x80",
    b"\xed\xa0\x80",  # an encoded surrogate: invalid UTF-8
    b"GET / HTTP/1.1",
]

fragments = st.one_of(
    st.binary(max_size=24),
    st.sampled_from(TOKENS),
    st.integers(1, 80).map(lambda n: b"A" * n),
)
byte_streams = st.lists(fragments, max_size=40).map(b"".join)
line_limits = st.one_of(st.sampled_from([1, 2, 3, 4, 8, 16, 64]), st.just(MAX_LINE_LENGTH))
long_byte_streams = st.lists(
    st.one_of(
        fragments,
        st.integers(MAX_LINE_LENGTH - 3, MAX_LINE_LENGTH + 3).map(lambda n: b"B" * n),
    ),
    max_size=12,
).map(b"".join)
encodings = st.sampled_from(["utf-8", "latin-1"])

Event = tuple[str, str, str]  # ("command", verb, arg) or ("error", class name, code)


def chunked(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` split at the given offsets (taken modulo its length + 1)."""
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def check_command(command: Command) -> None:
    """What every decoded command must look like, whatever bytes it came from."""
    verb, arg = command.verb, command.arg
    assert verb, "empty verb"
    assert " " not in verb, f"space in verb {verb!r}"
    assert not any("a" <= char <= "z" for char in verb), f"verb not upper-cased: {verb!r}"
    assert not any("\udc80" <= char <= "\udcff" for char in verb), f"undecodable verb {verb!r}"
    for forbidden in "\r\n\0":
        assert forbidden not in verb, f"{forbidden!r} in {command!r}"
        assert forbidden not in arg, f"{forbidden!r} in {command!r}"


def drain(decoder: CommandDecoder, events: list[Event]) -> None:
    """Take every complete command out; errors are recorded and decoding goes on."""
    while True:
        try:
            command = decoder.next_command()
        except ProtocolError as exc:
            events.append(("error", type(exc).__name__, exc.code))
            continue
        if command is None:
            return
        check_command(command)
        events.append(("command", command.verb, command.arg))


def decode_chunks(decoder: CommandDecoder, chunks: Iterable[bytes]) -> list[Event]:
    """Feed ``chunks`` as the session does, draining after each, checking the memory bound.

    A ``LineTooLong`` from ``feed`` is recorded after the complete lines before it, which
    the decoder keeps available (its documented contract), so events are in stream order.

    The bound, read from the class: the unterminated tail never exceeds
    ``max_line_length + 1`` (a CR waiting for its LF), so after draining that is all that
    is held; right after a feed, one chunk more, plus one byte: an IAC that ended the
    previous chunk is held in the Telnet state and may come back as data with this one.
    """
    limit = decoder.max_line_length
    events: list[Event] = []
    for chunk in chunks:
        try:
            decoder.feed(chunk)
            too_long = None
        except LineTooLong as exc:
            too_long = exc
        assert decoder.buffered <= limit + 2 + len(chunk), (decoder.buffered, len(chunk))
        drain(decoder, events)
        if too_long is not None:
            events.append(("error", type(too_long).__name__, too_long.code))
        assert decoder.buffered <= limit + 1, decoder.buffered
    codes = {code for kind, _, code in events if kind == "error"}
    assert codes <= {"500", "501"}, codes
    return events


@pytest.mark.slow  # CPU: hypothesis examples
@settings(max_examples=examples(1000), deadline=None, database=None)
@given(data=byte_streams, cuts=st.lists(st.integers(0, 10_000)), limit=line_limits, enc=encodings)
def test_decoder_only_raises_protocol_errors_and_stays_bounded(
    data: bytes, cuts: list[int], limit: int, enc: str
) -> None:
    """Any bytes, any chunking: only ProtocolErrors, well-formed commands, a bounded buffer."""
    decode_chunks(CommandDecoder(enc, limit), chunked(data, cuts))


@pytest.mark.slow  # CPU: hypothesis examples
@settings(max_examples=examples(1000), deadline=None, database=None)
@given(data=byte_streams, cuts=st.lists(st.integers(0, 10_000)), limit=line_limits, enc=encodings)
def test_decoder_chunking_invariance(data: bytes, cuts: list[int], limit: int, enc: str) -> None:
    """Bytes in one chunk, random chunks or one by one: the same commands and errors."""
    whole = decode_chunks(CommandDecoder(enc, limit), [data])
    assert decode_chunks(CommandDecoder(enc, limit), chunked(data, cuts)) == whole
    one_by_one = [data[i : i + 1] for i in range(len(data))]
    assert decode_chunks(CommandDecoder(enc, limit), one_by_one) == whole


@settings(max_examples=examples(100), deadline=None, database=None)
@given(data=long_byte_streams, cuts=st.lists(st.integers(0, 100_000), max_size=30))
def test_decoder_default_limit_around_4096(data: bytes, cuts: list[int]) -> None:
    """Lines around the default 4096-byte limit: bounded buffer, chunking-invariant events."""
    whole = decode_chunks(CommandDecoder(), [data])
    assert decode_chunks(CommandDecoder(), chunked(data, cuts)) == whole


# --- encode_reply ----------------------------------------------------------------------------

reply_codes = st.integers(100, 599).map(str)
reply_chars = st.one_of(
    st.characters(),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),  # lone surrogates
    st.sampled_from("\r\n\0 -0123456789"),
)
reply_texts = st.text(reply_chars, max_size=30)


def expected_text(text: str, encoding: str) -> bytes:
    """What a reply line's text becomes: CR, LF, NUL as spaces, unencodable chars as '?'."""
    safe = text.replace("\r", " ").replace("\n", " ").replace("\0", " ")
    return safe.encode(encoding, errors="replace")


@pytest.mark.slow  # CPU: hypothesis examples
@settings(max_examples=examples(1000), deadline=None, database=None)
@given(
    code=reply_codes,
    lines=st.one_of(reply_texts, st.lists(reply_texts, max_size=6)),
    encoding=encodings,
)
def test_encode_reply_is_well_formed(code: str, lines: str | list[str], encoding: str) -> None:
    """Any code and text (CR, LF, NUL, surrogates): a well-formed reply carrying the text."""
    data = encode_reply(code, lines, encoding)
    assert data.endswith(b"\r\n")
    pieces = data[:-2].split(b"\r\n")
    texts = [lines] if isinstance(lines, str) else lines or [""]
    got_code, got_texts = check_reply_lines(pieces)
    assert got_code == code
    assert len(pieces) == len(texts)
    wanted = [expected_text(text, encoding) for text in texts]
    if len(texts) > 1:  # middle lines get a leading space unless they have one
        wanted[1:-1] = [w if w.startswith(b" ") else b" " + w for w in wanted[1:-1]]
        got_texts[1:-1] = pieces[1:-1]
    assert got_texts == wanted


@settings(max_examples=examples(50), deadline=None, database=None)
@given(code=st.text(max_size=5).filter(lambda c: not re.fullmatch("[0-9]{3}", c)))
def test_encode_reply_refuses_bad_codes(code: str) -> None:
    """A code that is not three ASCII digits is a ValueError, never a malformed reply."""
    with pytest.raises(ValueError, match="three digits"):
        encode_reply(code, "text")


# --- the session state machine ----------------------------------------------------------------

#: Seconds (real time) any reply, data transfer or session end may take.
DEADLINE = 5.0
HOME = "/home/user"
SEED: dict[str, bytes | None] = {
    f"{HOME}/file.txt": b"hello\r\nworld\n",
    f"{HOME}/big.bin": bytes(range(256)) * 800,  # 200 KiB: transfers span many blocks
    f"{HOME}/empty": b"",
    f"{HOME}/space name.txt": b"spaces",
    f"{HOME}/dir/nested.bin": b"\0\1\2",
    f"{HOME}/dir/sub/": None,
    f"{HOME}/ro/locked.txt": b"locked",
    "/secret.txt": b"outside every user's root",
}
#: Verbs that answer without a login (the rest must refuse with 530 or worse).
PUBLIC_VERBS = frozenset(
    {"USER", "PASS", "ACCT", "QUIT", "REIN", "NOOP", "SYST", "FEAT", "HELP", "OPTS", "TYPE"}
    | {"MODE", "STRU", "ALLO", "AUTH", "PBSZ", "PROT", "CCC", "ABOR", "STAT", "SITE"}
)
#: Verbs that change the tree: never successful for the read-only anonymous user.
WRITE_VERBS = frozenset(
    {"STOR", "APPE", "STOU", "DELE", "MKD", "XMKD", "RMD", "XRMD", "RNFR", "RNTO", "MFMT"}
)
DOWNLOADS = frozenset({"RETR", "LIST", "NLST", "MLSD"})
UPLOADS = frozenset({"STOR", "APPE", "STOU"})
#: RFC 959 §5.4: the replies that may end a transfer after its 1yz (421: server closing).
TRANSFER_ENDS = frozenset({"226", "250", "425", "426", "451", "551", "552", "421"})
TEMP_UPLOAD = re.compile(r"/\.[^/]*\.[0-9a-f]{12}\.upload$")
HTTP_LINE = b"GET / HTTP/1.1"


def known_verbs() -> list[str]:
    """Every verb the server knows, upper-cased (from ``commands_mapping``)."""
    return sorted(verb.upper() for verb in Server([]).commands_mapping)


KNOWN_VERBS = known_verbs()
UNKNOWN_VERBS = ["XYZZY", "GET", "NOOPX", "RETRR", "ÉTÉ", "A" * 60, "X-1", "\t"]
#: Placeholders replaced by a loopback port nothing listens on (PORT/EPRT get ECONNREFUSED).
PORT_HI, PORT_LO, PORT_NUM = "<hi>", "<lo>", "<port>"
ARGS = [
    *["file.txt", "big.bin", "empty", "space name.txt", "dir", "dir/nested.bin", "dir/sub"],
    *["ro", "ro/locked.txt", "new.bin", "newdir", "newdir/x", "missing", "dir/missing/x"],
    *["/", ".", "..", "../..", "/../../secret.txt", "../secret.txt", "../../home", "dir/../.."],
    *["dir/./../file.txt", "//dir//sub//", " leading", "trailing ", "a  b", "*", "*.txt"],
    *["-la", "-la dir", "-a /", "-", "--", "0", "1", "2", "-1", "42", "99999999999999999999"],
    *["1 0", "0 5", "5 2", "3 99999", "A", "I", "L 8", "A N", "E", "S", "F", "ON", "OFF"],
    *["UTF8 ON", "UTF8 OFF", "HASH", "HASH MD5", "HASH CRC32", "HASH nope", "MLST type;size;"],
    *["MLST", "../x", "HELP", "HELP CHMOD", "CHMOD 644 file.txt", "CHMOD 9 x", "CHMOD", "NOPE"],
    *["20200101000000 file.txt", "2020 file.txt", "20200101000000", "ALL", "TLS", "SSL", "P"],
    *[f"127,0,0,1,{PORT_HI},{PORT_LO}", f"|1|127.0.0.1|{PORT_NUM}|", "|2|::1|5000|"],
    *["10,0,0,1,4,1", "127,0,0,1,0,21", "1,2,3", "|3|x|1|", "user", "anonymous", "ftp"],
    *["nopass", "pw", "wrong", "ünïcødé.txt", "日本語/ファイル", "\x00", "a\x00b", "a\rb"],
    *["a\nb", "NOOP\rDELE file.txt", "x" * 300, "y" * 4000, "z" * 5000, "\t", "~", "~user"],
]


@dataclass(frozen=True)
class Step:
    """One command line, and what the client does if it starts a transfer (a 150 reply)."""

    line: bytes
    during: str = "finish"  # finish | abor | stat | reset
    upload: int = 0  # bytes sent by an upload


def _line(verb: str, arg: bytes | None) -> bytes:
    return verb.encode() if arg is None else verb.encode() + b" " + arg


raw_args = st.binary(max_size=12).map(lambda b: b.replace(b"\xff", b"\xfe"))  # no Telnet
text_args = st.text(st.characters(codec="utf-8"), max_size=12).map(str.encode)
surrogate_args = st.text(max_size=6).map(lambda t: (t + "\udcc3").encode("utf-8", "surrogatepass"))
path_args = st.tuples(st.sampled_from(["dir/", "../", "/", "new", "ro/"]), text_args).map(
    lambda pair: pair[0].encode() + pair[1]
)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Draw from one of ``choices`` with the given weights (``one_of`` weighs its branches
    evenly, and merges repeated ones)."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


arguments = weighted(
    (2, st.none()),
    (6, st.sampled_from(ARGS).map(str.encode)),
    (1, text_args),
    (1, raw_args),
    (1, surrogate_args),
    (2, path_args),
)
verbs = weighted(
    (12, st.sampled_from(KNOWN_VERBS)),
    (2, st.sampled_from(KNOWN_VERBS).map(str.lower)),
    (2, st.sampled_from(UNKNOWN_VERBS)),
    (1, st.just("")),  # a line starting with a space: no verb
)
login_lines = st.sampled_from(
    [b"USER user", b"PASS pw", b"PASS wrong", b"USER anonymous", b"PASS x", b"USER nopass"]
)
during_actions = st.sampled_from(["finish", "finish", "abor", "stat", "reset"])
uploads = st.sampled_from([0, 1, 100, 70_000])
command_lines = st.builds(_line, verbs, arguments)
single_steps = st.builds(
    Step,
    line=weighted(
        (8, command_lines),
        (1, login_lines),
        (1, st.sampled_from([HTTP_LINE, b"", b"   ", b"\xff\xf4\xff\xf2ABOR"])),
    ),
    during=during_actions,
    upload=uploads,
)
transfer_args = st.one_of(
    st.none(),
    st.sampled_from(["file.txt", "big.bin", "dir", "new.bin", "newdir/x", "-la", "ro/x"]),
    st.sampled_from(["space name.txt", "../secret.txt", "empty", "missing", "dir/sub"]),
    arguments,
).map(lambda arg: arg.encode() if isinstance(arg, str) else arg)
#: A data channel, then a transfer on it: without these, random scripts rarely transfer.
transfer_blocks = st.tuples(
    st.sampled_from(
        [b"PASV", b"EPSV", b"EPSV 1", b"PASV", f"PORT 127,0,0,1,{PORT_HI},{PORT_LO}".encode()]
    ),
    st.builds(
        Step,
        line=st.builds(_line, st.sampled_from(sorted(DOWNLOADS | UPLOADS)), transfer_args),
        during=during_actions,
        upload=uploads,
    ),
).map(lambda pair: [Step(pair[0]), pair[1]])
single_blocks = single_steps.map(lambda step: [step])
blocks = weighted((3, single_blocks), (1, transfer_blocks))
scripts = st.lists(blocks, max_size=30).map(lambda bs: [step for block in bs for step in block])
RW_LOGIN = [b"USER user", b"PASS pw"]
logins = st.sampled_from([[], RW_LOGIN, [b"USER anonymous", b"PASS guest"], [b"USER nopass"]])


def seeded_memory_path_io() -> type[MemoryPathIO]:
    """A MemoryPathIO whose sessions share one fresh tree holding SEED."""
    tree = MemoryPathIO.from_files(SEED).state

    class Seeded(MemoryPathIO):
        def __init__(self, timeout: Any = None, connection: Any = None, state: Any = None):
            super().__init__(timeout=timeout, connection=connection, state=state or tree)

    return Seeded


def fuzz_server(atomic_uploads: bool) -> Server:
    """A memory server with a read/write user, a passwordless user and a read-only
    anonymous user, all rooted at HOME; one connection at a time, so a leaked slot shows."""
    users = [
        User("user", "pw", base_path=HOME),
        User("nopass", None, base_path=HOME, permissions=[Permission("/ro", writable=False)]),
        User(base_path=HOME, permissions=[Permission("/", writable=False)]),
    ]
    return Server(
        users,
        path_io_factory=seeded_memory_path_io(),
        login_failure_delay=0,
        wait_future_timeout=0.3,
        socket_timeout=5,
        idle_timeout=60,
        maximum_connections=1,
        maximum_connections_per_ip=1,
        atomic_uploads=atomic_uploads,
    )


async def snapshot(server: Server) -> dict[str, bytes | None]:
    """Every path of the server's memory tree -> file content (None for a directory)."""
    path_io = server.new_path_io(None)  # type: ignore[arg-type]
    tree: dict[str, bytes | None] = {}

    async def walk(directory: PurePosixPath) -> None:
        async for child in path_io.list(directory):
            if await path_io.is_dir(child):
                tree[f"{child}/"] = None
                await walk(child)
            else:
                async with path_io.open(child, "rb") as file:
                    tree[str(child)] = await file.read()

    await walk(PurePosixPath("/"))
    return tree


@dataclass
class Reply:
    code: str
    texts: list[bytes]


class SessionClosed(Exception):
    """The server closed the control connection at a reply boundary."""


@dataclass
class Driver:
    """Runs Steps on one memory session, checking every reply against the model.

    The model: who is logged in (after a 230), whether the session must be closed (after
    221, 421 or a 500 for an overlong line), and the client end of the data connection
    opened after a 227/229.
    """

    stream: trio.abc.Stream
    refused_port: int
    transcript: list[str] = field(default_factory=list)
    buffer: bytes = b""
    logged: str | None = None  # None, "rw" or "anonymous"
    pending_user: str | None = None
    rw_logged_in: bool = False
    closed: bool = False
    data: trio.SocketStream | None = None
    first_command: bool = True

    # wire ----------------------------------------------------------------------------------
    async def _line(self) -> bytes | None:
        """The next reply line without its CR LF; None at EOF between lines."""
        while b"\r\n" not in self.buffer:
            try:
                chunk = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                chunk = b""
            if not chunk:
                assert not self.buffer, f"server closed mid-line: {self.buffer!r}"
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    async def reply(self) -> Reply:
        """The next complete reply, checked; SessionClosed at EOF before it."""
        with trio.fail_after(DEADLINE):
            first = await self._line()
            if first is None:
                raise SessionClosed
            lines = [first]
            if _FIRST_LINE.match(first) and first[3:4] == b"-":
                while not lines[-1].startswith(first[:3] + b" ") or len(lines) == 1:
                    line = await self._line()
                    assert line is not None, f"server closed mid-reply: {lines!r}"
                    lines.append(line)
        code, texts = check_reply_lines(lines)
        for line in lines:
            line.decode("utf-8")  # replies are always valid in the server's encoding
        self.transcript.append(f"  <- {b' | '.join(lines)[:200]!r}")
        return Reply(code, texts)

    async def send(self, line: bytes) -> None:
        self.transcript.append(f"-> {line[:120]!r}")
        await self.stream.send_all(line + b"\r\n")

    def render(self, line: bytes) -> bytes:
        """The line as sent: placeholders filled in, and no CR LF inside (one line each)."""
        port = self.refused_port
        line = line.replace(PORT_HI.encode(), str(port >> 8).encode())
        line = line.replace(PORT_LO.encode(), str(port & 0xFF).encode())
        line = line.replace(PORT_NUM.encode(), str(port).encode())
        while b"\r\n" in line:
            line = line.replace(b"\r\n", b"\r")
        return line

    # one step ------------------------------------------------------------------------------
    async def run(self, step: Step) -> None:
        line = self.render(step.line)
        verb = line.lstrip(b"\xff\xf4\xf2").partition(b" ")[0].decode("utf-8", "replace").upper()
        first = self.first_command
        if line.strip() and not decoder_rejects(line):
            self.first_command = False  # the server's "first command" (HTTP check)
        await self.send(line)
        if not line.strip():
            return  # a blank line is ignored; the next reply checks nothing was answered
        try:
            reply = await self.reply()
        except SessionClosed:
            assert first, "session closed without a reply"
            assert line == HTTP_LINE, "session closed without a reply"
            self.closed = True
            return
        if reply.code.startswith("1"):
            connected = self.data is not None
            reply = await self.transfer(step, verb)
            assert reply.code in TRANSFER_ENDS, f"{line!r}: 1yz then {reply} (RFC 959 §5.4)"
            note_event(f"{verb} {step.during} (data connection: {connected}): {reply.code}")
        elif verb in DOWNLOADS | UPLOADS:
            note_event(f"{verb} refused as {self.logged or 'nobody'}: {reply.code}")
        self.check(verb, line, reply)
        self.update(verb, line, reply)
        if reply.code in ("227", "229"):
            await self.open_data(reply)
        elif verb in ("PORT", "EPRT", "REIN", "ABOR") and reply.code[0] == "2":
            await close_quietly(self.data)  # the server dropped its passive channel
            self.data = None

    async def transfer(self, step: Step, verb: str) -> Reply:
        """A transfer began (150): act on the data connection as the step says, and return
        the reply that ends the command."""
        data, self.data = self.data, None
        if step.during == "abor":
            return await self.abort(data)
        if step.during == "stat":
            await self.send(b"STAT")
            replies = [await self.reply()]
            while replies[-1].code != "211":  # the transfer may have ended first
                replies.append(await self.reply())
            finals = [r for r in replies if r.code != "211"]
            if finals:
                await close_quietly(data)
                return finals[-1]
        if step.during == "reset":
            await reset(data)
        else:
            await finish_data(data, verb, step.upload)
        return await self.reply()

    async def abort(self, data: trio.SocketStream | None) -> Reply:
        """ABOR mid-transfer, then NOOP: every reply up to NOOP's 200 is the transfer's end
        and ABOR's answer; the last of them must be 226 (225 is never sent) (RFC 959 §4.1.3)."""
        await self.send(b"ABOR")
        await self.send(b"NOOP")
        replies = [await self.reply()]
        while replies[-1].code != "200":
            replies.append(await self.reply())
        await close_quietly(data)
        assert len(replies) >= 2, replies
        assert replies[-2].code == "226", replies
        if len(replies) > 2:  # the transfer's own end came first
            return replies[-3]
        return replies[-2]

    # the model -----------------------------------------------------------------------------
    def check(self, verb: str, line: bytes, reply: Reply) -> None:
        """Security invariants: no login-only command before login, no write as anonymous."""
        success = reply.code[0] in "123"
        argument = line.partition(b" ")[2].strip().upper()
        needs_login = verb in KNOWN_VERBS and verb not in PUBLIC_VERBS
        needs_login |= verb == "STAT" and bool(argument)
        needs_login |= verb == "SITE" and not argument.startswith(b"HELP")
        if needs_login and self.logged is None:
            assert not success, f"{line!r} succeeded before login: {reply}"
        writes = verb in WRITE_VERBS or (verb == "SITE" and argument.startswith(b"CHMOD"))
        if writes and self.logged == "anonymous":
            assert not success, f"{line!r} succeeded for the read-only anonymous user: {reply}"

    def update(self, verb: str, line: bytes, reply: Reply) -> None:
        argument = line.partition(b" ")[2].decode("utf-8", "replace")
        if verb == "USER" and reply.code in ("230", "331"):
            name = argument
            self.pending_user = "anonymous" if name in ("anonymous", "ftp") else name
            self.logged = None
        if reply.code == "230" and self.pending_user is not None and self.logged is None:
            self.logged = "anonymous" if self.pending_user == "anonymous" else "rw"
            self.rw_logged_in |= self.logged == "rw"
        if verb == "REIN" and reply.code == "220":
            self.logged = self.pending_user = None
        too_long = reply.code == "500" and b"too long" in b"".join(reply.texts)
        if reply.code in ("221", "421") or too_long:
            self.closed = True

    async def open_data(self, reply: Reply) -> None:
        """After 227/229, connect to the announced port (the server accepts in background)."""
        await close_quietly(self.data)
        self.data = None
        text = b"".join(reply.texts).decode()
        if reply.code == "227":
            numbers = re.search(r"\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)", text)
            assert numbers, text
            port = int(numbers[5]) << 8 | int(numbers[6])
        else:
            found = re.search(r"\(\|\|\|(\d+)\|\)", text)
            assert found, text
            port = int(found[1])
        with trio.fail_after(DEADLINE):
            self.data = await trio.open_tcp_stream("127.0.0.1", port)


def note_event(text: str) -> None:
    """For --hypothesis-show-statistics: how often transfers ran, and how they ended."""
    if currently_in_test_context():
        event(text)


def decoder_rejects(line: bytes) -> bool:
    """True if the codec refuses the line (ProtocolError): it is not a command at all."""
    decoder = CommandDecoder()
    decoder.feed(line + b"\r\n")
    try:
        decoder.next_command()
    except ProtocolError:
        return True
    return False


async def close_quietly(stream: trio.SocketStream | None) -> None:
    if stream is not None:
        await trio.aclose_forcefully(stream)


async def reset(stream: trio.SocketStream | None) -> None:
    """Close with a TCP RST (SO_LINGER 0): the abrupt end of a data connection."""
    if stream is not None:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await trio.aclose_forcefully(stream)


async def finish_data(stream: trio.SocketStream | None, verb: str, upload: int) -> None:
    """Do the client's part of a transfer: read a download to its end, or send an upload
    and close. The server may have given up already: a broken connection is fine."""
    if stream is None:
        return
    try:
        with trio.fail_after(DEADLINE):
            if verb in DOWNLOADS:
                while await stream.receive_some(65536):
                    pass
            elif verb in UPLOADS:
                await stream.send_all(os.urandom(upload))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def run_session(server: Server, script: Sequence[Step], refused_port: int) -> Driver:
    """Run ``script`` on one memory session; then a final NOOP (200) unless it closed; then
    hang up, and the session's teardown must end within DEADLINE."""
    with trio.CancelScope() as teardown:
        async with trio.open_nursery() as nursery:
            client = await start_memory_session(nursery, server)
            driver = Driver(client.stream, refused_port)
            try:
                await drive(driver, script)
            except BaseException:
                print("\n".join(driver.transcript[-40:]))
                raise
            finally:
                await close_quietly(driver.data)
                await trio.aclose_forcefully(client.stream)
                teardown.deadline = trio.current_time() + DEADLINE
    assert not teardown.cancelled_caught, "the session did not end after the client hung up"
    assert not server.connections
    return driver


async def drive(driver: Driver, script: Sequence[Step]) -> None:
    """Greeting, the steps, then proof of life: NOOP -> 200, or EOF if the session closed."""
    assert (await driver.reply()).code == "220"
    for step in script:
        if driver.closed:
            break
        await driver.run(step)
    if not driver.closed:
        await driver.send(b"NOOP")
        assert (await driver.reply()).code == "200", "the session stopped answering"
    else:
        with trio.fail_after(DEADLINE):
            assert await driver._line() is None, "data after the session closed"


async def second_session_answers(server: Server) -> None:
    """A new session after the first ended: greeted 220 (so no connection slot leaked:
    the server allows one at a time), NOOP 200, QUIT 221."""
    async with trio.open_nursery() as nursery:
        client = await start_memory_session(nursery, server)
        driver = Driver(client.stream, 0)
        assert (await driver.reply()).code == "220", "a connection slot leaked"
        await driver.send(b"NOOP")
        assert (await driver.reply()).code == "200"
        await driver.send(b"QUIT")
        assert (await driver.reply()).code == "221"
        await client.stream.aclose()


def check_tree(before: dict[str, bytes | None], after: dict[str, bytes | None], rw: bool) -> None:
    """Nothing outside the users' root changed; nothing at all unless a read/write user
    logged in; no temporary file of an atomic upload left behind."""

    def outside(tree: dict[str, bytes | None]) -> dict[str, bytes | None]:
        return {path: data for path, data in tree.items() if not path.startswith(HOME + "/")}

    assert outside(after) == outside(before), "the tree changed outside the users' root"
    if not rw:
        assert after == before, "the tree changed without a read/write login"
    leftovers = [path for path in after if TEMP_UPLOAD.search(path.rstrip("/"))]
    assert not leftovers, f"atomic-upload temporary files left: {leftovers}"


def server_errors(records: Iterable[logging.LogRecord]) -> list[str]:
    """ERROR records of the server's loggers ("handler failed", "session failed"...): an
    exception escaped a handler (answered 451) or killed a session."""
    return [
        f"{record.getMessage()}\n{record.exc_text or ''}"
        for record in records
        if record.name.startswith("trio_ftp") and record.levelno >= logging.ERROR
    ]


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


async def fuzz_one(script: Sequence[Step], atomic_uploads: bool) -> None:
    server = fuzz_server(atomic_uploads)
    before = await snapshot(server)
    refused = trio.socket.socket()  # bound, never listening: PORT/EPRT get ECONNREFUSED
    await refused.bind(("127.0.0.1", 0))
    try:
        driver = await run_session(server, script, refused.getsockname()[1])
        await second_session_answers(server)
    finally:
        refused.close()
    check_tree(before, await snapshot(server), driver.rw_logged_in)


def check_session(caplog: pytest.LogCaptureFixture, script: list[Step], atomic: bool) -> None:
    """Run one fuzzed session and its after-checks (log, descriptors)."""
    caplog.clear()
    fds = open_fds()
    trio.run(fuzz_one, script, atomic)
    assert not server_errors(caplog.records), server_errors(caplog.records)
    assert open_fds() <= fds, f"descriptors leaked: {sorted(open_fds() - fds)}"


@pytest.mark.slow  # CPU: hypothesis examples
@settings(
    max_examples=examples(1200),
    deadline=None,
    database=None,
    # Each example is a whole session: report the first bug found, shrunk, and skip the
    # explain phase (it reruns hundreds of sessions to annotate the report).
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(login=logins, script=scripts, atomic_uploads=st.booleans())
def test_session_state_machine(
    caplog: pytest.LogCaptureFixture, login: list[bytes], script: list[Step], atomic_uploads: bool
) -> None:
    """Random sessions: replies well-formed and timely, no auth/permission breach, no leaks."""
    # In detail: every verb, unknown verbs and hostile arguments, before and after login,
    # transfers ended normally or by ABOR, STAT or a data RST; every reply well-formed
    # (RFC 959 §4.2) within DEADLINE; nothing but 530 or worse before login and no write
    # as anonymous; no "handler failed"/"session failed" in the log; the session still
    # answering NOOP (or closed after 221/421/500); nothing changed outside the users'
    # root; no descriptor, connection slot or temporary upload file left behind.
    check_session(caplog, [Step(line) for line in login] + script, atomic_uploads)


#: Sessions the fuzzer found breaking the server, replayed on every run.
FINDINGS = {
    # STOU of the root directory: ValueError in PurePosixPath.with_name, answered 451.
    "stou-root": [Step(b"PASV"), Step(b"STOU /")],
    # STOR into a missing directory: 150, then 550 (no transfer-end code, RFC 959 §5.4).
    "stor-missing-dir": [Step(b"EPSV"), Step(b"STOR no/x")],
}


@pytest.mark.parametrize("name", sorted(FINDINGS))
@pytest.mark.parametrize("atomic", [False, True])
def test_fuzz_findings(caplog: pytest.LogCaptureFixture, name: str, atomic: bool) -> None:
    """Sessions that once broke the server pass every check of the state-machine test."""
    check_session(caplog, [Step(line) for line in RW_LOGIN] + FINDINGS[name], atomic)
