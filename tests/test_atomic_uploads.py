"""``Server(atomic_uploads=True)``: the target holds the old file or the whole new one."""

from __future__ import annotations

import io
import os
import socket
import stat

import trio
from conftest import in_thread, random_bytes


async def test_successful_upload_replaces_the_file_whole(start_server, root):
    """A completed STOR renames the temporary file over the target; nothing else is left."""
    (root / "f.bin").write_bytes(b"old")
    running = await start_server(atomic_uploads=True)
    payload = random_bytes(3 * 1024 * 1024)

    def upload() -> str:
        with running.ftp() as client:
            return client.storbinary("STOR f.bin", io.BytesIO(payload))

    assert (await in_thread(upload)).startswith("226")
    assert (root / "f.bin").read_bytes() == payload
    assert sorted(p.name for p in root.iterdir()) == ["f.bin"]


async def test_cut_upload_keeps_the_old_file_and_leaves_no_temporary(start_server, root):
    """An upload reset halfway leaves the old contents and no temporary file."""
    (root / "f.bin").write_bytes(b"old contents")
    running = await start_server(atomic_uploads=True)

    def cut_upload() -> str:
        with running.ftp() as client:
            client.voidcmd("TYPE I")
            data = client.transfercmd("STOR f.bin")
            data.sendall(random_bytes(1024 * 1024))
            data.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            data.close()  # RST: the upload failed
            try:
                return client.getresp()
            except Exception as exc:  # ftplib raises for 4xx
                return str(exc)

    reply = await in_thread(cut_upload)
    assert not reply.startswith("226"), reply
    with trio.fail_after(5):
        while sorted(p.name for p in root.iterdir()) != ["f.bin"]:  # noqa: ASYNC110
            await trio.sleep(0.01)
    assert (root / "f.bin").read_bytes() == b"old contents"


async def test_atomic_upload_drops_special_mode_bits(start_server, root):
    """An atomic STOR over a setuid/setgid/sticky file keeps its permission bits but not
    0o7000 (vsftpd's chmod mask); with permit_special_mode_bits they are kept."""
    for permit, expected in ((False, 0o755), (True, 0o7755)):
        target = root / f"tool-{permit}"
        target.write_bytes(b"old")
        os.chmod(target, 0o7755)
        if stat.S_IMODE(target.stat().st_mode) != 0o7755:  # pragma: no cover
            raise AssertionError("this file system drops special bits on chmod")
        running = await start_server(atomic_uploads=True, permit_special_mode_bits=permit)

        def upload(name: str = target.name, running=running) -> str:
            with running.ftp() as client:
                return client.storbinary(f"STOR {name}", io.BytesIO(b"new"))

        assert (await in_thread(upload)).startswith("226")
        assert target.read_bytes() == b"new"
        assert stat.S_IMODE(target.stat().st_mode) == expected
