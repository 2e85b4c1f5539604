"""Replies of the single-file, info, SITE and HASH handlers that the protocol tests do not
reach: renaming the root, MFMT on a backend without mtimes or failing, OPTS UTF8 OFF, FEAT of a
server without MLST or HASH, a SITE alias registered at run time, SITE CHMOD failing. Each test
talks to a real session over memory streams and checks the replies and the files."""

from __future__ import annotations

import errno
import os
from pathlib import PurePosixPath
from typing import Any

from test_site_hash import connect, make_server, tree_of

from trio_ftp import AbstractPathIO, MemoryPathIO, Server


async def test_rnfr_of_the_root_is_refused(nursery: Any) -> None:
    server = make_server()
    client = await connect(nursery, server)
    for spelling in ["/", ".", "/..", "d/.."]:
        assert await client.command(f"RNFR {spelling}") == (
            "550",
            ["can't rename the root directory"],
        )
    # and no rename is pending: RNTO has nothing to rename
    assert await client.code("RNTO x") == "503"
    assert await client.code("RNFR f.txt") == "350"
    assert await client.code("RNTO g.txt") == "250"
    assert not await tree_of(server).exists(PurePosixPath("/f.txt"))


class NoMtime(MemoryPathIO):
    set_mtime = AbstractPathIO.set_mtime  # type: ignore[assignment]


class BrokenMtime(MemoryPathIO):
    async def set_mtime(self, path: PurePosixPath, mtime: float) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))


async def test_mfmt_on_a_backend_without_mtimes_is_502(nursery: Any) -> None:
    """The default AbstractPathIO.set_mtime raises NotImplementedError: 502, not a crash."""
    server = make_server(path_io=NoMtime)
    client = await connect(nursery, server)
    before = (await tree_of(server).stat(PurePosixPath("/f.txt"))).st_mtime
    assert await client.command("MFMT 20200102030405 f.txt") == (
        "502",
        ["MFMT is not supported by this backend"],
    )
    assert (await tree_of(server).stat(PurePosixPath("/f.txt"))).st_mtime == before
    assert await client.code("NOOP") == "200"


async def test_mfmt_failing_in_the_backend_answers_its_error(nursery: Any) -> None:
    """Any other backend error is the ordinary errno reply (EROFS: 550 read-only)."""
    client = await connect(nursery, make_server(path_io=BrokenMtime))
    assert await client.command("MFMT 20200102030405 f.txt") == (
        "550",
        ["read-only file system"],
    )


async def test_mfmt_sets_the_time(nursery: Any) -> None:
    server = make_server()
    client = await connect(nursery, server)
    assert await client.command("MFMT 20200102030405 f.txt") == (
        "213",
        ["Modify=20200102030405; f.txt"],
    )
    assert await client.command("MDTM f.txt") == ("213", ["20200102030405"])


async def test_opts_utf8_can_be_turned_on_not_off(nursery: Any) -> None:
    client = await connect(nursery, make_server(), login=None)
    assert await client.command("OPTS UTF8 ON") == ("200", ["UTF8 mode is always on"])
    assert await client.command("OPTS UTF8") == ("200", ["UTF8 mode is always on"])
    assert await client.command("OPTS UTF8 OFF") == ("504", ["UTF8 can't be turned off"])


async def test_feat_lists_only_what_the_server_has(nursery: Any) -> None:
    """A server whose MLST and HASH verbs were taken out does not announce them; TVFS, UTF8
    and the rest stay."""
    server = make_server()
    for verb in ["mlst", "hash"]:
        del server.commands_mapping[verb]
    client = await connect(nursery, server, login=None)
    code, lines = await client.command("FEAT")
    assert code == "211"
    features = {line.strip().split(" ")[0] for line in lines[1:-1]}
    assert {"TVFS", "UTF8", "SIZE", "MDTM", "EPRT"} <= features
    assert not features & {"MLST", "HASH"}
    full = await connect(nursery, make_server(), login=None)
    _, full_lines = await full.command("FEAT")
    assert {"MLST", "HASH"} <= {line.strip().split(" ")[0] for line in full_lines[1:-1]}


async def test_feat_without_active_mode_drops_eprt(nursery: Any) -> None:
    server = Server(make_server().user_manager, path_io_factory=MemoryPathIO, active_mode=False)
    client = await connect(nursery, server, login=None)
    _, lines = await client.command("FEAT")
    assert "EPRT" not in {line.strip() for line in lines}


async def test_site_alias_registered_at_run_time_keeps_help_and_login_rule(
    nursery: Any,
) -> None:
    """``site_commands_mapping["MODE"] = server.site_chmod``: SITE MODE is CHMOD under another
    name, with CHMOD's help and its need for a login."""
    server = make_server()
    server.site_commands_mapping["MODE"] = server.site_chmod
    client = await connect(nursery, server, login=None)
    assert await client.command("SITE MODE 600 f.txt") == ("530", ["not logged in"])
    code, lines = await client.command("SITE HELP MODE")
    assert code == "214"
    assert lines == ["SITE CHMOD <mode> <path>: set permission bits (octal, e.g. 0644)"]
    assert await client.code("USER user") == "331"
    assert await client.code("PASS pw") == "230"
    assert await client.command("SITE mode 600 f.txt") == ("200", ["mode set to 0600"])
    assert (await tree_of(server).stat(PurePosixPath("/f.txt"))).st_mode & 0o777 == 0o600


class BrokenChmod(MemoryPathIO):
    async def chmod(self, path: PurePosixPath, mode: int) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM), str(path))


async def test_site_chmod_failing_in_the_backend_answers_its_error(nursery: Any) -> None:
    """Not 'unsupported' (502): the backend's own error (EPERM: 550 permission denied)."""
    client = await connect(nursery, make_server(path_io=BrokenChmod))
    code, lines = await client.command("SITE CHMOD 600 f.txt")
    assert code == "550"
    assert "not supported" not in lines[0]
    assert await client.code("NOOP") == "200"
