"""Reading a PROXY protocol header off a connection: exactly its bytes, never one past it.

:mod:`trio_ftp.proxyprotocol` parses; this module decides how many bytes to take so that
what follows the header (the client's FTP commands, or its TLS handshake) stays in the
connection for whoever reads next. The v2 header says its own length; a v1 line ends at the
first CR LF, found by peeking (:meth:`~trio_ftp.controlsocket.ControlSocket.peek`) and
taken up to there. Both are bounded (107 bytes, ``MAX_V2_LENGTH``). The caller bounds the
time (the session and the data channel use ``proxy_protocol_timeout``).
"""

from __future__ import annotations

from .controlsocket import ControlSocket
from .proxyprotocol import (
    MAX_V1_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    parse_header,
)

__all__ = ["header_prefix", "receive_header"]

_V1_PREFIX = b"PROXY "
#: v2 header bytes before its length field ends.
_V2_FIXED = 16


def header_prefix(data: bytes) -> bool | None:
    """Whether ``data`` (a connection's first bytes) starts a PROXY header: True once a whole
    v1 prefix (``PROXY ``) or v2 signature is there, False as soon as it can't be one, None
    while too few bytes tell."""
    for signature in (_V1_PREFIX, V2_SIGNATURE):
        if data.startswith(signature):
            return True
    if _V1_PREFIX.startswith(data[: len(_V1_PREFIX)]) or V2_SIGNATURE.startswith(data):
        return None
    return False


async def _receive_exactly(source: ControlSocket, count: int) -> bytes:
    """``count`` bytes (never more). Raises ProxyProtocolError at EOF."""
    chunks = []
    while count:
        data = await source.receive_some(count)
        if not data:
            raise ProxyProtocolError("the connection ended inside the PROXY header")
        chunks.append(data)
        count -= len(data)
    return b"".join(chunks)


async def _receive_v1_line(source: ControlSocket, start: bytes) -> bytes:
    """The rest of a v1 line after ``start``, CR LF included: peek, take up to the CR LF (or
    all that was peeked, when it holds none), until the line ends or 107 bytes are taken."""
    line = start
    while not line.endswith(b"\r\n"):
        room = MAX_V1_LENGTH - len(line)
        if room <= 0:
            raise ProxyProtocolError("v1 header longer than 107 bytes")
        ahead = await source.peek(room)
        if not ahead:
            raise ProxyProtocolError("the connection ended inside the PROXY header")
        # A CR at the end of what was taken may pair with an LF at the start of the peek.
        end = (line[-1:] + ahead).find(b"\r\n")
        take = len(ahead) if end < 0 else end + 2 - len(line[-1:])
        line += await _receive_exactly(source, take)
    return line


async def receive_header(source: ControlSocket) -> ProxyHeader:
    """Read one PROXY header (v1 or v2) from ``source`` and nothing after it.

    Raises:
        ProxyProtocolError: the bytes are not a valid header, or the connection ended
            inside it.
        trio.BrokenResourceError, trio.ClosedResourceError: the connection failed.
    Timeouts: none; the caller bounds the wait.
    """
    data = await _receive_exactly(source, len(_V1_PREFIX))
    if data == _V1_PREFIX:
        data = await _receive_v1_line(source, data)
    elif V2_SIGNATURE.startswith(data):
        data += await _receive_exactly(source, _V2_FIXED - len(data))
        parse_header(data)  # the version, command and announced length, checked first
        data += await _receive_exactly(source, int.from_bytes(data[14:16], "big"))
    parsed = parse_header(data)
    if parsed is None or parsed[1] != len(data):  # pragma: no cover - the reads above match
        raise ProxyProtocolError("PROXY header length mismatch")
    return parsed[0]
