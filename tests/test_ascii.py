"""Streaming TYPE A line-ending conversion (trio_ftp.ascii), chunk boundaries included."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_ftp.ascii import FromNetwork, ToNetwork

_BARE_LF = re.compile(rb"(?<!\r)\n")

# Bytes rich in CR and LF, so that splits land on and between them often.
line_bytes = st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"\x00", b"\xff", b"xyz"]), max_size=60
).map(b"".join)
any_data = st.one_of(line_bytes, st.binary(max_size=200))


def to_network_reference(data: bytes) -> bytes:
    """The documented rule, written independently: every LF not preceded by CR → CR LF."""
    return _BARE_LF.sub(b"\r\n", data)


def run(converter: ToNetwork | FromNetwork, chunks: Iterable[bytes]) -> bytes:
    """Feed every chunk, then flush, and join the output."""
    return b"".join([converter.convert(chunk) for chunk in chunks]) + converter.flush()


def split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """Cut data at the given offsets (repeated offsets give empty chunks)."""
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def data_and_chunks(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """Some data, and a split of it into chunks (empty chunks included)."""
    data = draw(any_data)
    return data, split(data, draw(st.lists(st.integers(0, len(data)), max_size=8)))


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"a\nb\n"], b"a\r\nb\r\n"),
        ([b"a\r\nb\r\n"], b"a\r\nb\r\n"),
        ([b"a\rb\r"], b"a\rb\r"),
        ([b"\n\n"], b"\r\n\r\n"),
        ([b"a\r\nb\nc\rd\r\r\n"], b"a\r\nb\r\nc\rd\r\r\n"),
        ([b"a\r", b"\nb"], b"a\r\nb"),
        ([b"a\r", b"", b"\nb"], b"a\r\nb"),
        ([b"a\r", b"b\n"], b"a\rb\r\n"),
        ([b"a", b"\n"], b"a\r\n"),
        ([b"\r", b"\n", b"\n"], b"\r\n\r\n"),
        ([b"", b"", b""], b""),
        ([], b""),
    ],
)
def test_to_network_examples(chunks: list[bytes], expected: bytes) -> None:
    """ToNetwork adds CR only before bare LF, across chunk ends too."""
    assert run(ToNetwork(), chunks) == expected


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"a\r\nb\r\n"], b"a\nb\n"),
        ([b"a\nb\n"], b"a\nb\n"),
        ([b"a\rb"], b"a\rb"),
        ([b"a\r\nb\nc\rd\r\r\n"], b"a\nb\nc\rd\r\n"),
        ([b"a\r", b"\nb"], b"a\nb"),
        ([b"a\r", b"", b"", b"\nb"], b"a\nb"),
        ([b"a\r", b"b"], b"a\rb"),
        ([b"a\r", b"\r", b"\n"], b"a\r\n"),
        ([b"a\r"], b"a\r"),
        ([b"", b""], b""),
        ([], b""),
    ],
)
def test_from_network_examples(chunks: list[bytes], expected: bytes) -> None:
    """FromNetwork turns CR LF into LF, keeps lone CR, and waits on a trailing CR."""
    assert run(FromNetwork(), chunks) == expected


def test_from_network_holds_back_trailing_cr_until_flush() -> None:
    """A CR ending a chunk is not emitted until the stream says what follows it."""
    converter = FromNetwork()
    assert converter.convert(b"abc\r") == b"abc"
    assert converter.convert(b"") == b""
    assert converter.flush() == b"\r"
    assert converter.flush() == b""


def test_to_network_holds_nothing_back() -> None:
    """ToNetwork emits every byte at once, so flush has nothing to add."""
    converter = ToNetwork()
    assert converter.convert(b"abc\r") == b"abc\r"
    assert converter.convert(b"\n") == b"\n"
    assert converter.flush() == b""


def test_chunk_without_line_ends_passes_through_unchanged() -> None:
    """A chunk with no CR or LF is returned as the same object, not copied."""
    chunk = b"x" * 100_000
    assert ToNetwork().convert(chunk) is chunk
    assert FromNetwork().convert(chunk) is chunk


@given(data_and_chunks())
def test_from_network_matches_one_shot_replace(case: tuple[bytes, list[bytes]]) -> None:
    """FromNetwork over any split equals data.replace(CR LF, LF)."""
    data, chunks = case
    assert run(FromNetwork(), chunks) == data.replace(b"\r\n", b"\n")


@given(data_and_chunks())
def test_to_network_matches_one_shot_rule(case: tuple[bytes, list[bytes]]) -> None:
    """ToNetwork over any split equals the one-shot rule: bare LF becomes CR LF."""
    data, chunks = case
    out = run(ToNetwork(), chunks)
    assert out == to_network_reference(data)
    assert _BARE_LF.search(out) is None


@given(data_and_chunks(), st.data())
def test_round_trip_without_cr(case: tuple[bytes, list[bytes]], draw: st.DataObject) -> None:
    """For CR-free data, FromNetwork(ToNetwork(data)) gives back the data, however split."""
    data, chunks = case
    data = data.replace(b"\r", b"")
    wire = run(ToNetwork(), [chunk.replace(b"\r", b"") for chunk in chunks])
    wire_cuts = draw.draw(st.lists(st.integers(0, len(wire)), max_size=8))
    assert run(FromNetwork(), split(wire, wire_cuts)) == data
