"""Control-channel framing and reply encoding (trio_ftp.codec), without any sockets."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_ftp.codec import (
    MAX_LINE_LENGTH,
    Command,
    CommandDecoder,
    encode_reply,
    has_surrogates,
    is_http_request,
    quote_path,
)
from trio_ftp.errors import LineTooLong, ProtocolError

IAC, IP, DM, WILL, DO = b"\xff", b"\xf4", b"\xf2", b"\xfb", b"\xfd"


def drain(decoder: CommandDecoder) -> list[Command]:
    commands = []
    while (command := decoder.next_command()) is not None:
        commands.append(command)
    return commands


def decode(data: bytes, **kwargs: object) -> list[Command]:
    decoder = CommandDecoder(**kwargs)  # type: ignore[arg-type]
    decoder.feed(data)
    return drain(decoder)


# --- framing -------------------------------------------------------------------------------
def test_crlf_ends_a_line() -> None:
    assert decode(b"NOOP\r\n") == [Command("NOOP", "")]


def test_bare_lf_does_not_end_a_line() -> None:
    decoder = CommandDecoder()
    decoder.feed(b"NOOP\n")
    assert decoder.next_command() is None


@pytest.mark.parametrize("separator", [b"\n", b"\r"])
def test_bare_cr_or_lf_cannot_smuggle_a_second_command(separator: bytes) -> None:
    decoder = CommandDecoder()
    decoder.feed(b"NOOP" + separator + b"DELE victim\r\nPWD\r\n")
    with pytest.raises(ProtocolError) as info:
        decoder.next_command()
    assert info.value.code == "501"
    assert decoder.next_command() == Command("PWD", "")  # the refused line is consumed whole


def test_no_command_until_the_line_ends() -> None:
    decoder = CommandDecoder()
    decoder.feed(b"NOOP\r")
    assert decoder.next_command() is None
    decoder.feed(b"\n")
    assert decoder.next_command() == Command("NOOP", "")
    assert decoder.next_command() is None


def test_split_byte_by_byte() -> None:
    decoder = CommandDecoder()
    seen = []
    for byte in b"USER anonymous\r\nPASS x\r\nRETR dir/f\xc3\xa9.txt\r\n":
        decoder.feed(bytes([byte]))
        seen.extend(drain(decoder))
    assert seen == [
        Command("USER", "anonymous"),
        Command("PASS", "x"),
        Command("RETR", "dir/fé.txt"),
    ]


def test_several_commands_in_one_feed() -> None:
    assert decode(b"TYPE I\r\nPASV\r\nSTOR x\r\n") == [
        Command("TYPE", "I"),
        Command("PASV", ""),
        Command("STOR", "x"),
    ]


def test_blank_lines_are_skipped() -> None:
    assert decode(b"\r\n\n  \r\nNOOP\r\n\r\n") == [Command("NOOP", "")]


def test_verb_is_upper_cased_arg_is_not() -> None:
    assert decode(b"cwd MixedCase\r\n") == [Command("CWD", "MixedCase")]
    assert decode(b"Opts utf8 on\r\n") == [Command("OPTS", "utf8 on")]


def test_argument_keeps_every_space() -> None:
    assert decode(b"STOR  two leading and trailing  \r\n") == [
        Command("STOR", " two leading and trailing  ")
    ]
    assert decode(b"MKD a  b\r\n") == [Command("MKD", "a  b")]


def test_parse_strips_one_trailing_cr() -> None:
    assert Command.parse("RETR x\r") == Command("RETR", "x")
    assert Command.parse("RETR x") == Command("RETR", "x")
    assert Command.parse("noop") == Command("NOOP", "")
    assert Command.parse("SITE ") == Command("SITE", "")


def test_line_starting_with_a_space_has_no_verb() -> None:
    decoder = CommandDecoder()
    decoder.feed(b" NOOP\r\nPWD\r\n")
    with pytest.raises(ProtocolError) as info:
        decoder.next_command()
    assert info.value.code == "500"
    assert decoder.next_command() == Command("PWD", "")


# --- password censoring --------------------------------------------------------------------
def test_pass_argument_never_shown() -> None:
    command = Command.parse("pass hunter2")
    assert command.arg == "hunter2"
    assert "hunter2" not in repr(command)
    assert "hunter2" not in str(command)
    assert str(command) == "PASS ****"
    assert "****" in repr(command)
    assert "hunter2" not in f"{command!r} {command} {[command]}"


def test_other_arguments_are_shown() -> None:
    command = Command.parse("USER alice")
    assert "alice" in repr(command)
    assert str(command) == "USER alice"
    assert str(Command.parse("NOOP")) == "NOOP"


# --- Telnet (RFC 854) ----------------------------------------------------------------------
def test_interrupt_process_and_data_mark_before_abor() -> None:
    # What lftp and ftplib's abort() send: IAC IP IAC DM then ABOR.
    assert decode(IAC + IP + IAC + DM + b"ABOR\r\n") == [Command("ABOR", "")]


def test_telnet_sequence_split_across_feeds() -> None:
    decoder = CommandDecoder()
    for byte in IAC + IP + IAC + DM + b"ABOR\r\n":
        decoder.feed(bytes([byte]))
    assert drain(decoder) == [Command("ABOR", "")]


def test_double_iac_is_a_literal_ff() -> None:
    decoder = CommandDecoder(encoding="latin-1")
    decoder.feed(b"RETR a" + IAC)
    decoder.feed(IAC + b"b\r\n")
    assert drain(decoder) == [Command("RETR", "a\xffb")]


def test_option_negotiation_is_removed_even_if_option_is_lf() -> None:
    assert decode(IAC + WILL + b"\x01NO" + IAC + DO + b"\nOP\r\n") == [Command("NOOP", "")]


def test_lone_iac_before_data_byte_is_kept() -> None:
    assert decode(b"RETR " + IAC + b"x\r\n", encoding="latin-1") == [Command("RETR", "\xffx")]


# --- bad lines -----------------------------------------------------------------------------
def test_undecodable_verb_is_501_and_decoding_goes_on() -> None:
    """A verb that is not valid in the encoding is a 501; the next line still decodes."""
    decoder = CommandDecoder()
    decoder.feed(b"RE\xc3(TR x\r\nNOOP\r\n")
    with pytest.raises(ProtocolError) as info:
        decoder.next_command()
    assert info.value.code == "501"
    assert decoder.next_command() == Command("NOOP", "")
    assert decoder.next_command() is None


def test_undecodable_argument_keeps_surrogate_escapes() -> None:
    """An argument with invalid bytes decodes with surrogate escapes (PEP 383), so the
    session can round-trip a name it listed; the bytes come back unchanged."""
    (command,) = decode(b"RETR caf\xe9.txt\r\n")
    assert command.verb == "RETR"
    assert has_surrogates(command.arg)
    assert command.arg.encode("utf-8", "surrogateescape") == b"caf\xe9.txt"
    assert not has_surrogates("café.txt")


def test_same_bytes_decode_in_latin1() -> None:
    assert decode(b"RETR \xc3(\r\n", encoding="latin-1") == [Command("RETR", "\xc3(")]


def test_nul_byte_is_501() -> None:
    decoder = CommandDecoder()
    decoder.feed(b"RETR a\0b\r\nPWD\r\n")
    with pytest.raises(ProtocolError) as info:
        decoder.next_command()
    assert info.value.code == "501"
    assert not isinstance(info.value, LineTooLong)
    assert decoder.next_command() == Command("PWD", "")


# --- line limit ----------------------------------------------------------------------------
def test_default_limit() -> None:
    assert MAX_LINE_LENGTH == 4096
    assert CommandDecoder().max_line_length == MAX_LINE_LENGTH


@pytest.mark.parametrize("terminator", [b"\r\n"])
def test_line_exactly_at_limit_is_accepted(terminator: bytes) -> None:
    line = b"STOR " + b"x" * 11  # 16 bytes
    decoder = CommandDecoder(max_line_length=16)
    decoder.feed(line[:-1])
    decoder.feed(line[-1:] + terminator[:1])
    decoder.feed(terminator[1:])
    assert drain(decoder) == [Command("STOR", "x" * 11)]


def test_complete_line_over_limit_raises_and_is_consumed() -> None:
    decoder = CommandDecoder(max_line_length=16)
    decoder.feed(b"STOR " + b"x" * 12 + b"\r\nNOOP\r\n")
    with pytest.raises(LineTooLong) as info:
        decoder.next_command()
    assert info.value.code == "500"
    assert decoder.next_command() == Command("NOOP", "")


def test_unterminated_line_over_limit_raises_in_feed() -> None:
    decoder = CommandDecoder(max_line_length=16)
    decoder.feed(b"x" * 16)
    decoder.feed(b"\r")  # could still be the end of a CR LF
    with pytest.raises(LineTooLong):
        decoder.feed(b"y")


def test_endless_data_without_lf_keeps_the_buffer_bounded() -> None:
    limit, chunk = 100, 7
    decoder = CommandDecoder(max_line_length=limit)
    raised = 0
    for _ in range(1000):
        try:
            decoder.feed(b"z" * chunk)
        except LineTooLong:
            raised += 1
        assert decoder.buffered <= limit + 1  # tighter than limit + chunk
    assert raised == 1  # the rest of that line is discarded, not re-reported
    decoder.feed(b"zzz\r\nNOOP\r\n")  # the overlong line ends; the next one is fine
    assert drain(decoder) == [Command("NOOP", "")]


def test_huge_single_chunk_without_lf_is_not_kept() -> None:
    decoder = CommandDecoder(max_line_length=100)
    decoder.feed(b"NOOP\r\n")
    with pytest.raises(LineTooLong):
        decoder.feed(b"a" * 10_000)
    assert decoder.buffered == len(b"NOOP\r\n")
    assert drain(decoder) == [Command("NOOP", "")]


def test_overlong_tail_after_complete_lines_in_one_chunk() -> None:
    decoder = CommandDecoder(max_line_length=10)
    with pytest.raises(LineTooLong):
        decoder.feed(b"PWD\r\n" + b"b" * 50)
    assert decoder.buffered == len(b"PWD\r\n")
    decoder.feed(b"bbb\r")  # the discarded line's CR LF is split across two feeds
    decoder.feed(b"\nSYST\r\n")
    assert drain(decoder) == [Command("PWD", ""), Command("SYST", "")]


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        CommandDecoder(max_line_length=0)


# --- property ------------------------------------------------------------------------------
_verbs = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=6)
_args = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs")),
    max_size=30,
)


@given(
    commands=st.lists(st.tuples(_verbs, st.one_of(st.none(), _args)), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=20),
)
def test_any_chunking_yields_exactly_the_commands(
    commands: list[tuple[str, str | None]], cuts: list[int]
) -> None:
    lines = [verb if arg is None else f"{verb} {arg}" for verb, arg in commands]
    data = b"".join(line.encode() + b"\r\n" for line in lines)
    points = sorted({min(cut, len(data)) for cut in cuts} | {0, len(data)})
    decoder = CommandDecoder()
    seen: list[Command] = []
    for start, end in itertools.pairwise(points):
        decoder.feed(data[start:end])
        seen.extend(drain(decoder))
    assert seen == [Command(verb, arg or "") for verb, arg in commands]
    assert decoder.buffered == 0


# --- replies -------------------------------------------------------------------------------
def test_single_line_reply() -> None:
    assert encode_reply("200", "ok") == b"200 ok\r\n"
    assert encode_reply("200", ["ok"]) == b"200 ok\r\n"


def test_empty_text_is_code_and_space() -> None:
    assert encode_reply("200", "") == b"200 \r\n"
    assert encode_reply("200", []) == b"200 \r\n"


def test_multi_line_reply() -> None:
    assert encode_reply("211", ["Features:", "MDTM", " SIZE", "End"]) == (
        b"211-Features:\r\n MDTM\r\n SIZE\r\n211 End\r\n"
    )
    assert encode_reply("214", ["first", "last"]) == b"214-first\r\n214 last\r\n"


def test_middle_line_cannot_pose_as_the_last() -> None:
    reply = encode_reply("211", ["a", "211 fake end", "b"])
    assert reply.split(b"\r\n")[1] == b" 211 fake end"


@pytest.mark.parametrize("bad", ["\r\n", "\n", "\r", "\0"])
def test_reply_injection_is_neutralised(bad: str) -> None:
    reply = encode_reply("550", f"evil{bad}230 logged in")
    assert reply.count(b"\r\n") == 1
    assert reply.endswith(b"\r\n")
    assert b"\n" not in reply[:-1]
    assert b"\r" not in reply[:-2]
    assert b"\0" not in reply
    assert reply.startswith(b"550 evil ")


def test_reply_injection_in_multi_line() -> None:
    reply = encode_reply("250", ["listing", " type=file; a\r\n250 b", "end"])
    assert reply.split(b"\r\n") == [b"250-listing", b" type=file; a  250 b", b"250 end", b""]


def test_reply_encoding_and_replacement() -> None:
    assert encode_reply("257", '"/é" created') == '257 "/é" created\r\n'.encode()
    assert encode_reply("257", "é", encoding="ascii") == b"257 ?\r\n"
    assert encode_reply("550", "bad \udcff name") == b"550 bad ? name\r\n"


@pytest.mark.parametrize("code", ["20", "2000", "abc", "2x0", "", "٢٠٠"])
def test_reply_code_must_be_three_digits(code: str) -> None:
    with pytest.raises(ValueError, match="three digits"):
        encode_reply(code, "x")


def test_quote_path() -> None:
    assert quote_path("/") == '"/"'
    assert quote_path('/a "b"') == '"/a ""b"""'
    assert quote_path('"') == '""""'


@pytest.mark.parametrize(
    ("line", "http"),
    [
        ("GET / HTTP/1.1", True),
        ("POST /upload HTTP/1.0", True),
        ("CONNECT example:21 HTTP/1.1", True),
        ("get / HTTP/1.1", True),
        ("GET file", False),  # not FTP either, but not HTTP: a plain 502
        ("RETR / HTTP/1.1", False),
        ("OPTS UTF8 ON", False),
    ],
)
def test_http_request_lines_are_recognised(line: str, http: bool) -> None:
    """An HTTP request line is told apart from FTP commands (the session then closes)."""
    assert is_http_request(Command.parse(line)) is http
