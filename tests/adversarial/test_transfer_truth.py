"""Transfers tell the truth: ``226`` only for an upload that arrived whole, what is on disk
is what was sent (a prefix of it, or with ``atomic_uploads`` the old file or the whole new
one), and under ``PROT P`` no file byte crosses a plaintext data connection.

Every test runs a real server on loopback and talks to it through raw sockets (``Wire``).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
import trio
from conftest import LOGIN, PASSWORD, random_bytes
from wire import (
    Wire,
    back_to,
    baseline,
    data_connect,
    logged_in,
    quit_and_close,
    receive_all,
    reset_socket,
    start_server,  # noqa: F401 (the fixture: wraps conftest's)
)

KiB = 1024
MiB = 1024 * KiB
_PROGRESS = re.compile(rb"(\d+) bytes so far")
_STOU_NAME = re.compile(rb"FILE: ([^\r\n]+)")


# helpers ---------------------------------------------------------------------------------------
#: Binary uploads on plain data connections go through the kernel (splice in a worker
#: thread), ASCII ones through Python: each guarantee is checked on both paths. The
#: payloads hold no CR, so ASCII conversion leaves them as they are.
TYPES = pytest.mark.parametrize("kind", ["I", "A"], ids=["binary-kernel-path", "ascii-python-path"])


def payload_of(size: int, seed: int) -> bytes:
    """Reproducible random bytes without CR (the same on disk in TYPE A and TYPE I)."""
    return random_bytes(size + size // 64 + 64, seed=seed).replace(b"\r", b"")[:size]


async def tls_logged_in(host: str, port: int, tls) -> Wire:
    """A control connection upgraded by AUTH TLS, logged in, with PBSZ 0 and PROT P."""
    wire = await Wire.connect(host, port)
    assert (await wire.greeting()).startswith(b"220")
    assert (await wire.command("AUTH TLS")).startswith(b"234")
    stream = trio.SSLStream(wire.stream, tls.client_context, server_hostname="127.0.0.1")
    with trio.fail_after(10):
        await stream.do_handshake()
    wire.stream = stream  # type: ignore[assignment]
    assert (await wire.login(LOGIN, PASSWORD)).startswith(b"230")
    assert (await wire.command("TYPE I")).startswith(b"200")
    assert (await wire.command("PBSZ 0")).startswith(b"200")
    assert (await wire.command("PROT P")).startswith(b"200")
    return wire


async def tls_data(address: tuple[str, int], tls) -> trio.SSLStream:
    """A passive data connection with the client side of its TLS handshake done."""
    stream = trio.SSLStream(
        await data_connect(address), tls.client_context, server_hostname="127.0.0.1"
    )
    with trio.fail_after(10):
        await stream.do_handshake()
    return stream


async def final_reply(wire: Wire, seconds: float = 8) -> bytes:
    """The transfer's final reply, which must come within ``seconds``."""
    with trio.fail_after(seconds):
        return await wire.reply()


async def progress(wire: Wire) -> int:
    """Bytes the running transfer has moved so far, as ``STAT`` tells."""
    reply = await wire.command("STAT")
    assert reply.startswith(b"211"), reply
    match = _PROGRESS.search(reply)
    assert match is not None, reply
    return int(match.group(1))


async def until_received(wire: Wire, count: int) -> None:
    """Wait (bounded) until the server has taken ``count`` bytes of the running upload."""
    with trio.fail_after(5):
        while await progress(wire) < count:  # noqa: ASYNC110 (polling STAT)
            await trio.sleep(0.02)
    await trio.sleep(0.1)  # and written them


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones included): relative path -> contents."""
    files = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            files[str(path.relative_to(root))] = path.read_bytes()
    return files


def assert_prefix(contents: bytes, sent: bytes) -> None:
    assert sent.startswith(contents), (
        f"the partial file ({len(contents)} bytes) is not a prefix of what was sent"
    )


async def raw_bytes(stream: trio.SocketStream, seconds: float) -> bytes:
    """What arrives on ``stream`` until the server closes it or ``seconds`` pass."""
    received = b""
    with trio.move_on_after(seconds):
        try:
            while chunk := await stream.receive_some(65536):
                received += chunk
        except trio.BrokenResourceError:
            pass
    return received


def leaked_from(payload: bytes, received: bytes) -> bool:
    """True if any 16-byte piece of ``payload`` (sampled every 1 KiB) is in ``received``."""
    return any(payload[i : i + 16] in received for i in range(0, len(payload) - 16, KiB))


# cut uploads are never 226 ----------------------------------------------------------------------
@TYPES
async def test_upload_cut_by_reset_is_not_complete(start_server, root, kind):
    """A data connection reset mid-STOR is answered 426/451, and the file is a prefix."""
    running = await start_server()
    base = await baseline()
    wire = await logged_in(running.host, running.port, kind=kind)
    data = await data_connect(await wire.pasv())
    assert (await wire.command("STOR cut.bin")).startswith(b"150")
    payload = payload_of(4 * MiB, seed=11)
    await data.send_all(payload[: MiB // 2])
    await until_received(wire, MiB // 2)
    with trio.move_on_after(0.2):  # fill the socket buffers too, then cut
        await data.send_all(payload[MiB // 2 :])
    reset_socket(data.socket)
    reply = await final_reply(wire)
    assert reply[:3] in (b"426", b"451"), reply
    assert_prefix((root / "cut.bin").read_bytes(), payload)
    assert (await wire.command("NOOP")).startswith(b"200")
    await quit_and_close(wire)
    assert await back_to(base) == base


@TYPES
async def test_download_cut_by_reset_is_not_complete(start_server, root, kind):
    """A data connection reset mid-RETR is answered 426, never 226; the session goes on."""
    (root / "big.bin").write_bytes(payload_of(8 * MiB, seed=26))
    running = await start_server()
    base = await baseline()
    wire = await logged_in(running.host, running.port, kind=kind)
    data = await data_connect(await wire.pasv())
    assert (await wire.command("RETR big.bin")).startswith(b"150")
    with trio.fail_after(5):
        first = await data.receive_some(64 * KiB)
    assert first
    reset_socket(data.socket)
    reply = await final_reply(wire)
    assert reply[:3] in (b"426", b"451"), reply
    assert (await wire.command("NOOP")).startswith(b"200")
    await quit_and_close(wire)
    assert await back_to(base) == base


@TYPES
async def test_stalled_upload_is_not_complete(start_server, root, kind, stall_timeout):
    """An upload that stalls past socket_timeout is answered 426, and the file is a prefix."""
    stall = stall_timeout
    running = await start_server(socket_timeout=stall)
    base = await baseline()
    wire = await logged_in(running.host, running.port, kind=kind)
    data = await data_connect(await wire.pasv())
    assert (await wire.command("STOR stalled.bin")).startswith(b"150")
    payload = payload_of(256 * KiB, seed=12)
    await data.send_all(payload[: 100 * KiB])
    reply = await final_reply(wire, stall + 4)
    assert reply.startswith(b"426"), reply
    assert_prefix((root / "stalled.bin").read_bytes(), payload)
    await data.aclose()
    await quit_and_close(wire)
    assert await back_to(base) == base


@TYPES
async def test_aborted_upload_is_not_complete(start_server, root, kind):
    """ABOR mid-STOR: 426 for the transfer, then 226 for the ABOR; the file is a prefix."""
    running = await start_server()
    base = await baseline()
    wire = await logged_in(running.host, running.port, kind=kind)
    data = await data_connect(await wire.pasv())
    assert (await wire.command("STOR aborted.bin")).startswith(b"150")
    payload = payload_of(256 * KiB, seed=13)
    await data.send_all(payload[: 100 * KiB])
    await until_received(wire, 100 * KiB)
    await wire.send("ABOR\r\n")
    first = await final_reply(wire)
    assert first.startswith(b"426"), first
    second = await final_reply(wire)
    assert second.startswith(b"226"), second
    assert_prefix((root / "aborted.bin").read_bytes(), payload)
    await data.aclose()
    assert (await wire.command("NOOP")).startswith(b"200")
    await quit_and_close(wire)
    assert await back_to(base) == base


async def test_tls_upload_truncated_without_close_notify_is_not_complete(start_server, root, tls):
    """PROT P + tls_strict_eof: a TCP close without TLS close_notify mid-STOR gets 426."""
    running = await start_server(tls_context=tls.server_context, tls_strict_eof=True)
    base = await baseline()
    wire = await tls_logged_in(running.host, running.port, tls)
    data = await tls_data(await wire.pasv(), tls)
    assert (await wire.command("STOR truncated.bin")).startswith(b"150")
    payload = random_bytes(256 * KiB, seed=14)
    await data.send_all(payload[: 100 * KiB])
    await until_received(wire, 100 * KiB)
    await data.transport_stream.aclose()  # a plain TCP FIN: no close_notify
    reply = await final_reply(wire)
    assert reply.startswith(b"426"), reply
    assert_prefix((root / "truncated.bin").read_bytes(), payload)
    assert (await wire.command("NOOP")).startswith(b"200")
    await quit_and_close(wire)
    assert await back_to(base) == base


async def test_tls_upload_with_close_notify_is_complete(start_server, root, tls):
    """PROT P + tls_strict_eof: an upload ended by close_notify is whole and gets 226."""
    running = await start_server(tls_context=tls.server_context, tls_strict_eof=True)
    base = await baseline()
    wire = await tls_logged_in(running.host, running.port, tls)
    data = await tls_data(await wire.pasv(), tls)
    assert (await wire.command("STOR whole.bin")).startswith(b"150")
    payload = random_bytes(256 * KiB, seed=15)
    await data.send_all(payload)
    with trio.fail_after(5):
        await data.aclose()
    reply = await final_reply(wire)
    assert reply.startswith(b"226"), reply
    assert (root / "whole.bin").read_bytes() == payload
    await quit_and_close(wire)
    assert await back_to(base) == base


# atomic uploads ---------------------------------------------------------------------------------
#: socket_timeout of an upload cut by a stall after its payload.
STALL_AFTER_PAYLOAD = 0.75


@TYPES
@pytest.mark.parametrize("cut", ["data-reset", "abor", "stall", "control-reset"])
async def test_atomic_upload_cut_leaves_nothing(start_server, root, kind, cut):
    """atomic_uploads: an upload cut in any way is not 226 and leaves no file, temporary or not."""
    (root / "keep.txt").write_bytes(b"unrelated")
    # until_received (STAT polls) must see the whole payload before the stall timeout.
    running = await start_server(
        atomic_uploads=True, socket_timeout=STALL_AFTER_PAYLOAD if cut == "stall" else None
    )
    base = await baseline()
    wire = await logged_in(running.host, running.port, kind=kind)
    data = await data_connect(await wire.pasv())
    assert (await wire.command("STOR new.bin")).startswith(b"150")
    await data.send_all(payload_of(200 * KiB, seed=16))
    await until_received(wire, 200 * KiB)
    assert "new.bin" not in tree(root), "the target name shows a partial upload"
    if cut == "control-reset":
        wire.reset()
        ours = (base[0] + 1, base[1])  # our end of the data connection is still open
        assert await back_to(ours) == ours
        reset_socket(data.socket)
        assert tree(root) == {"keep.txt": b"unrelated"}
        return
    if cut == "data-reset":
        reset_socket(data.socket)
    elif cut == "abor":
        await wire.send("ABOR\r\n")
    reply = await final_reply(wire)
    assert reply[:3] in (b"426", b"451"), reply
    if cut == "abor":
        assert (await final_reply(wire)).startswith(b"226")
    assert tree(root) == {"keep.txt": b"unrelated"}
    if cut != "data-reset":
        await data.aclose()
    await quit_and_close(wire)
    assert tree(root) == {"keep.txt": b"unrelated"}
    assert await back_to(base) == base


async def test_atomic_upload_accepts_the_names_a_plain_upload_accepts(start_server, root):
    """atomic_uploads: a name of 250 bytes (NAME_MAX is 255) uploads as it does without."""
    running = await start_server(atomic_uploads=True)
    base = await baseline()
    wire = await logged_in(running.host, running.port, kind="I")
    name = "n" * 250
    payload = payload_of(100 * KiB, seed=23)
    data = await data_connect(await wire.pasv())
    assert (await wire.command(f"STOR {name}")).startswith(b"150")
    await data.send_all(payload)
    await data.aclose()
    reply = await final_reply(wire)
    assert reply.startswith(b"226"), reply
    assert tree(root) == {name: payload}
    await quit_and_close(wire)
    assert await back_to(base) == base


async def test_atomic_concurrent_uploads_leave_one_whole_file(start_server, root):
    """atomic_uploads: two overlapping uploads to one name leave exactly one of them, whole."""
    first, second = payload_of(MiB, seed=24), payload_of(MiB, seed=25)
    running = await start_server(atomic_uploads=True)
    base = await baseline()
    wires = [await logged_in(running.host, running.port, kind="I") for _ in range(2)]
    streams = [await data_connect(await wire.pasv()) for wire in wires]
    for wire in wires:
        assert (await wire.command("STOR same.bin")).startswith(b"150")
    for start in range(0, MiB, 64 * KiB):  # interleaved
        for stream, payload in zip(streams, (first, second), strict=True):
            await stream.send_all(payload[start : start + 64 * KiB])
    for stream in streams:
        await stream.aclose()
    for wire in wires:
        reply = await final_reply(wire)
        assert reply.startswith(b"226"), reply
    files = tree(root)
    assert list(files) == ["same.bin"], sorted(files)
    assert files["same.bin"] in (first, second), "the file mixes the two uploads"
    for wire in wires:
        await quit_and_close(wire)
    assert await back_to(base) == base


async def test_atomic_upload_replaces_old_contents_only_when_whole(start_server, root):
    """atomic_uploads: the old contents stay until a 226, then exactly the new ones."""
    old = random_bytes(300 * KiB, seed=17)
    new = random_bytes(700 * KiB, seed=18)
    (root / "data.bin").write_bytes(old)
    running = await start_server(atomic_uploads=True)
    base = await baseline()
    wire = await logged_in(running.host, running.port, kind="I")

    data = await data_connect(await wire.pasv())
    assert (await wire.command("STOR data.bin")).startswith(b"150")
    await data.send_all(new[: 400 * KiB])
    await until_received(wire, 400 * KiB)
    assert (root / "data.bin").read_bytes() == old, "old contents gone while uploading"
    reset_socket(data.socket)
    reply = await final_reply(wire)
    assert reply[:3] in (b"426", b"451"), reply
    assert tree(root) == {"data.bin": old}

    data = await data_connect(await wire.pasv())
    assert (await wire.command("STOR data.bin")).startswith(b"150")
    await data.send_all(new[: 400 * KiB])
    await until_received(wire, 400 * KiB)
    assert (root / "data.bin").read_bytes() == old, "old contents gone while uploading"
    await data.send_all(new[400 * KiB :])
    await data.aclose()
    reply = await final_reply(wire)
    assert reply.startswith(b"226"), reply
    assert tree(root) == {"data.bin": new}
    await quit_and_close(wire)
    assert await back_to(base) == base


async def test_atomic_replace_keeps_the_permission_bits(start_server, root):
    """atomic_uploads: replacing a 0600 file leaves it 0600, as an in-place upload does."""
    target = root / "private.txt"
    target.write_bytes(b"old secret")
    target.chmod(0o600)
    running = await start_server(atomic_uploads=True)
    base = await baseline()
    wire = await logged_in(running.host, running.port, kind="I")
    data = await data_connect(await wire.pasv())
    assert (await wire.command("STOR private.txt")).startswith(b"150")
    await data.send_all(b"new secret")
    await data.aclose()
    reply = await final_reply(wire)
    assert reply.startswith(b"226"), reply
    assert target.read_bytes() == b"new secret"
    mode = stat.S_IMODE(target.stat().st_mode)
    assert mode == 0o600, f"the replaced file is now {mode:o}"
    await quit_and_close(wire)
    assert await back_to(base) == base


async def test_atomic_stou(start_server, root):
    """atomic_uploads: a cut STOU leaves nothing; a whole one creates its file exactly."""
    (root / "report").write_bytes(b"first")
    running = await start_server(atomic_uploads=True)
    base = await baseline()
    wire = await logged_in(running.host, running.port, kind="I")

    data = await data_connect(await wire.pasv())
    opening = await wire.command("STOU report")
    assert opening.startswith(b"150"), opening
    await data.send_all(random_bytes(200 * KiB, seed=19))
    await until_received(wire, 200 * KiB)
    reset_socket(data.socket)
    reply = await final_reply(wire)
    assert reply[:3] in (b"426", b"451"), reply
    assert tree(root) == {"report": b"first"}

    payload = random_bytes(300 * KiB, seed=20)
    data = await data_connect(await wire.pasv())
    opening = await wire.command("STOU report")
    assert opening.startswith(b"150"), opening
    match = _STOU_NAME.search(opening)
    assert match is not None, opening
    name = match.group(1).decode()
    assert name != "report"
    await data.send_all(payload)
    await data.aclose()
    reply = await final_reply(wire)
    assert reply.startswith(b"226"), reply
    assert tree(root) == {"report": b"first", name: payload}
    await quit_and_close(wire)
    assert await back_to(base) == base


# PROT P: no file byte in clear ---------------------------------------------------------------
@pytest.mark.parametrize("speaks", [b"", b"hello, plaintext here\r\n"], ids=["silent", "talks"])
async def test_prot_p_download_never_goes_out_in_clear(start_server, root, tls, speaks):
    """PROT P: a data connection that never does TLS receives no byte of the file."""
    payload = b"TOP-SECRET:" + random_bytes(256 * KiB, seed=21)
    (root / "secret.bin").write_bytes(payload)
    running = await start_server(
        tls_context=tls.server_context, tls_handshake_timeout=0.3, wait_future_timeout=0.6
    )
    base = await baseline()
    wire = await tls_logged_in(running.host, running.port, tls)
    raw = await data_connect(await wire.pasv())
    if speaks:
        await raw.send_all(speaks)
    assert (await wire.command("RETR secret.bin")).startswith(b"150")
    received = await raw_bytes(raw, 4)
    assert not leaked_from(payload, received), "file bytes went out on a plaintext connection"
    reply = await final_reply(wire)
    assert reply[:1] in (b"4", b"5"), reply
    await raw.aclose()
    assert (await wire.command("NOOP")).startswith(b"200")
    await quit_and_close(wire)
    assert await back_to(base) == base


async def test_prot_p_upload_in_clear_is_not_stored(start_server, root, tls):
    """PROT P: plaintext bytes sent on the data connection are never written to the file."""
    payload = b"PLAINTEXT-UPLOAD:" + random_bytes(64 * KiB, seed=22)
    running = await start_server(
        tls_context=tls.server_context, tls_handshake_timeout=0.3, wait_future_timeout=0.6
    )
    base = await baseline()
    wire = await tls_logged_in(running.host, running.port, tls)
    raw = await data_connect(await wire.pasv())
    assert (await wire.command("STOR clear.bin")).startswith(b"150")
    try:
        await raw.send_all(payload)
        await raw.send_eof()
    except trio.BrokenResourceError:
        pass  # the server dropped it: fine
    reply = await final_reply(wire)
    assert reply[:1] in (b"4", b"5"), reply
    target = root / "clear.bin"
    assert not target.exists() or target.read_bytes() == b""
    assert not any(payload[:16] in contents for contents in tree(root).values())
    await raw.aclose()
    assert (await wire.command("NOOP")).startswith(b"200")
    await quit_and_close(wire)
    assert await back_to(base) == base


async def test_prot_p_download_over_tls_is_exact(start_server, root, tls):
    """PROT P: a data connection that does TLS gets the file exactly (the control check)."""
    payload = b"TOP-SECRET:" + random_bytes(256 * KiB, seed=21)
    (root / "secret.bin").write_bytes(payload)
    running = await start_server(tls_context=tls.server_context)
    base = await baseline()
    wire = await tls_logged_in(running.host, running.port, tls)
    data = await tls_data(await wire.pasv(), tls)
    assert (await wire.command("RETR secret.bin")).startswith(b"150")
    assert await receive_all(data) == payload
    await data.aclose()
    assert (await final_reply(wire)).startswith(b"226")
    await quit_and_close(wire)
    assert await back_to(base) == base
