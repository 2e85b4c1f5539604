"""Virtual (client-side) path arithmetic: pure, so confinement starts from a normalized path.

The second half of confinement (symlinks) needs the file system and lives in
``AbstractPathIO.confine``; :meth:`trio_ftp.server.Server.get_paths` is the one caller of both.
"""

from __future__ import annotations

from pathlib import PurePosixPath

__all__ = ["ROOT", "resolve_virtual"]

ROOT = PurePosixPath("/")


def resolve_virtual(
    current_directory: PurePosixPath, argument: str | PurePosixPath
) -> PurePosixPath:
    """Return the absolute, normalized virtual path that ``argument`` names.

    ``..`` never climbs above ``/`` (RFC 959 leaves the name space to the server; like every
    server we make the user's root the top). An empty argument names the current directory.
    """
    path = PurePosixPath(argument)
    if not path.is_absolute():
        path = current_directory / path
    parts: list[str] = []
    for part in path.parts[1:]:  # pathlib has already dropped "." and empty parts
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)
    return ROOT.joinpath(*parts)
