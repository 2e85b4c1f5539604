"""A scripted FTP client over trio's in-memory streams: session tests without sockets."""

from __future__ import annotations

from dataclasses import dataclass

import trio
import trio.testing

from trio_ftp import Server

PEER = ("127.0.0.1", 40000)
LOCAL = ("127.0.0.1", 21)


@dataclass
class MemoryClient:
    """The client end of a session served over a memory stream pair."""

    stream: trio.abc.Stream
    buffer: bytes = b""

    async def send(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else line.encode() + b"\r\n"
        await self.stream.send_all(data)

    async def _line(self) -> bytes | None:
        while b"\r\n" not in self.buffer:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    async def reply(self) -> tuple[str, list[str]]:
        """The next complete reply: ``(code, lines)``; raises EOFError at end of stream."""
        first = await self._line()
        if first is None:
            raise EOFError("server closed the control connection")
        text = first.decode()
        code, lines = text[:3], [text[4:]]
        if text[3:4] == "-":
            while True:
                line = await self._line()
                if line is None:
                    raise EOFError("server closed mid-reply")
                decoded = line.decode()
                if decoded.startswith(code + " "):
                    lines.append(decoded[4:])
                    break
                lines.append(decoded)
        return code, lines

    async def command(self, line: str | bytes) -> tuple[str, list[str]]:
        await self.send(line)
        return await self.reply()

    async def code(self, line: str | bytes) -> str:
        return (await self.command(line))[0]

    async def closed(self) -> bool:
        """True if the server has closed its end (EOF, after any buffered replies)."""
        try:
            while await self.stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
        return True


async def start_memory_session(
    nursery: trio.Nursery, server: Server, *, lockstep: bool = False
) -> MemoryClient:
    """Serve one session of ``server`` over an in-memory stream pair; return its client."""
    pair = trio.testing.lockstep_stream_pair if lockstep else trio.testing.memory_stream_pair
    client_stream, server_stream = pair()
    nursery.start_soon(lambda: server.serve_connection(server_stream, peer=PEER, local=LOCAL))
    return MemoryClient(client_stream)
