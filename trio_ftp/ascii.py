"""Streaming line-ending conversion for ``TYPE A`` transfers.

RFC 959 §3.1.1.1: in ASCII type the data connection carries CR LF line ends, while the
files we serve and store use native Unix LF. Transfers arrive and leave in arbitrary
chunks, so a CR LF pair can be split across two chunks; both converters keep one byte of
state to get that right, and do their work with ``bytes.replace`` so that multi-megabyte
transfers never loop over bytes in Python.
"""

from __future__ import annotations

__all__ = ["FromNetwork", "ToNetwork"]

_CR, _LF, _CRLF = b"\r", b"\n", b"\r\n"


class ToNetwork:
    """File bytes → wire (RETR, LIST in ASCII mode): every LF not preceded by CR becomes CR LF.

    The rule is applied to the stream as a whole, so a file that already has CR LF is sent
    unchanged (never CR CR LF), even when its CR ends one chunk and its LF starts the next.
    Nothing is held back: the only state is whether the last byte emitted was a CR.
    """

    __slots__ = ("_after_cr",)

    def __init__(self) -> None:
        self._after_cr = False

    def convert(self, chunk: bytes) -> bytes:
        """Convert one chunk; the output can go to the wire at once."""
        if not chunk:
            return chunk
        after_cr = self._after_cr
        self._after_cr = chunk.endswith(_CR)
        if _LF not in chunk:
            return chunk
        if after_cr and chunk.startswith(_LF):
            # That LF completes a CR LF pair begun in the previous chunk: keep it as is.
            return _LF + _convert_to_network(chunk[1:])
        return _convert_to_network(chunk)

    def flush(self) -> bytes:
        """End of stream; always ``b""`` since nothing is held back (kept for symmetry)."""
        self._after_cr = False
        return b""


def _convert_to_network(data: bytes) -> bytes:
    """One-shot form of the rule: strip the CR of each CR LF, then put a CR before every LF."""
    return data.replace(_CRLF, _LF).replace(_LF, _CRLF)


class FromNetwork:
    """Wire → file bytes (STOR, APPE in ASCII mode): CR LF becomes LF, a lone CR stays.

    A CR ending a chunk is held back until the next chunk (or :meth:`flush`) shows whether
    an LF follows it, so the output of the whole stream is ``data.replace(b"\\r\\n", b"\\n")``
    however the data was split.
    """

    __slots__ = ("_pending_cr",)

    def __init__(self) -> None:
        self._pending_cr = False

    def convert(self, chunk: bytes) -> bytes:
        """Convert one chunk; a trailing CR is withheld until the next call."""
        if self._pending_cr:
            if not chunk:
                return b""
            self._pending_cr = False
            chunk = _CR + chunk
        elif _CR not in chunk:
            return chunk
        if chunk.endswith(_CR):
            self._pending_cr = True
            chunk = chunk[:-1]
        return chunk.replace(_CRLF, _LF)

    def flush(self) -> bytes:
        """End of stream: a held-back CR had no LF after it, so it is data and goes out."""
        if self._pending_cr:
            self._pending_cr = False
            return _CR
        return b""
