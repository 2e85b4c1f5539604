"""The shortest path through the server: login, list, upload, download, quit."""

from __future__ import annotations

import io

from conftest import in_thread


async def test_login_store_retrieve(start_server):
    """A file stored with ftplib comes back byte for byte and is on disk."""
    running = await start_server()
    payload = bytes(range(256)) * 1000

    def client() -> bytes:
        with running.ftp() as ftp:
            ftp.storbinary("STOR data.bin", io.BytesIO(payload))
            out = io.BytesIO()
            ftp.retrbinary("RETR data.bin", out.write)
            assert ftp.nlst() == ["data.bin"]
            return out.getvalue()

    assert await in_thread(client) == payload
    assert (running.root / "data.bin").read_bytes() == payload
