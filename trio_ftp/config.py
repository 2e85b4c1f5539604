"""Configuration for the command line: scrypt password hashes, TOML files, hashed users.

Password hashes look like ``scrypt$16384$8$1$<salt b64>$<hash b64>`` (stdlib
:func:`hashlib.scrypt`, a random 16-byte salt). :class:`HashedUserManager` keeps such a hash in
``User.password`` and checks it in a worker thread, off the event loop.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import trio

from .pathio import is_storage_url
from .users import ANONYMOUS_LOGINS, MemoryUserManager, Permission, User

__all__ = [
    "ConfigError",
    "HashedUserManager",
    "hash_password",
    "load_toml",
    "users_from_config",
    "verify_password",
]

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_HASH_LENGTH = 32
_MAX_N = 2**20


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message is one line."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    maxmem = 128 * r * (n + p + 2) + 1024 * 1024
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=length
    )


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``password`` hashed with scrypt and a random salt, as ``scrypt$n$r$p$salt$hash``."""
    salt = os.urandom(16)
    digest = _scrypt(password, salt, n, r, p, _HASH_LENGTH)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def _parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ConfigError("password hash must look like scrypt$n$r$p$salt$hash")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error) as exc:
        raise ConfigError(f"malformed password hash: {exc}") from None
    if not (1 < n <= _MAX_N and n & (n - 1) == 0) or not 0 < r <= 64 or not 0 < p <= 16:
        raise ConfigError("password hash has unusable scrypt parameters")
    if not salt or not digest:
        raise ConfigError("password hash has an empty salt or hash")
    return n, r, p, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches ``encoded`` (a :func:`hash_password` result).

    A malformed hash never matches. This is slow on purpose: call it in a thread.
    """
    try:
        n, r, p, salt, digest = _parse_hash(encoded)
    except ConfigError:
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(digest)), digest)


class HashedUserManager(MemoryUserManager):
    """A :class:`MemoryUserManager` whose ``User.password`` values are scrypt hashes."""

    async def authenticate(self, user: User, password: str) -> bool:
        if user.login is None or user.password is None:
            return True
        return await trio.to_thread.run_sync(verify_password, password, user.password)


def load_toml(path: str | Path) -> dict[str, Any]:
    """The TOML file at ``path``; :class:`ConfigError` (one line) if unreadable or invalid."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - depends on the interpreter
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:
            raise ConfigError(
                "reading --config needs Python 3.11+ or the 'tomli' package"
            ) from None
    try:
        with open(path, "rb") as file:
            data: dict[str, Any] = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        message = " ".join(str(exc).split())
        raise ConfigError(f"{str(path)!r} is not valid TOML: {message}") from None
    return data


_USER_KEYS = {
    "login",
    "password_hash",
    "root",
    "home",
    "writable",
    "max_connections",
    "max_download_rate",
    "max_upload_rate",
}


def _positive(entry: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = entry.get(key)
    if value is None:
        return None
    allowed = (int, float) if kind is float else (int,)
    if isinstance(value, bool) or not isinstance(value, allowed) or value <= 0:
        raise ConfigError(f"{where}: {key} must be a positive number, got {value!r}")
    return value


def _user_root(
    root: object, default_root: Path | str, relative_to: Path | None, where: str
) -> Path:
    """A ``[[users]]`` root: a real directory (relative to ``relative_to``), or under a
    storage URL server root, a path below it or a storage URL of its own (kept as given:
    the storage backend reads it)."""
    storage = isinstance(default_root, str) and is_storage_url(default_root)
    if root is None:
        return Path(".") if storage else Path(default_root).resolve()
    if not isinstance(root, (str, Path)):
        raise ConfigError(f"{where}: root must be a string")
    if is_storage_url(str(root)):
        if not storage:
            raise ConfigError(
                f"{where}: a storage URL user root needs --root to be a storage URL too"
            )
        return Path(str(root))
    if storage:
        below = Path(str(root))
        if below.is_absolute() or ".." in below.parts:
            raise ConfigError(
                f"{where}: under a storage URL, root is a relative path below it, or a URL"
            )
        return below
    base = Path(root).expanduser()
    if not base.is_absolute() and relative_to is not None:
        base = relative_to / base
    if not base.is_dir():
        raise ConfigError(f"{where}: root {str(base)!r} is not a directory")
    return base.resolve()


def users_from_config(
    entries: Any, *, default_root: Path | str, relative_to: Path | None = None
) -> list[User]:
    """Users from a TOML ``[[users]]`` array (see the module docstring for the hash format).

    Keys: ``login``, ``password_hash`` (required), ``root`` (real directory, default
    ``default_root``; relative to ``relative_to``; under a storage URL ``default_root``, a
    path below it or a storage URL of its own), ``home`` (virtual start directory),
    ``writable`` (default true), ``max_connections``, ``max_download_rate``,
    ``max_upload_rate`` (bytes/s, shared by the user's sessions).
    """
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        raise ConfigError("users must be an array of tables ([[users]])")
    users: list[User] = []
    for index, entry in enumerate(entries):
        where = f"users[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} must be a table")
        unknown = sorted(set(entry) - _USER_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
        login, password_hash = entry.get("login"), entry.get("password_hash")
        if not isinstance(login, str) or not login or ":" in login:
            raise ConfigError(f"{where}: login must be a non-empty string")
        if login.lower() in ANONYMOUS_LOGINS:
            raise ConfigError(
                f"{where}: {login!r} is the anonymous login; anonymous access is set with "
                "--no-anonymous / --anonymous-writable (anonymous_writable = true), not [[users]]"
            )
        where = f"user {login!r}"
        if not isinstance(password_hash, str):
            raise ConfigError(
                f"{where}: password_hash is required (python -m trio_ftp hash-password)"
            )
        try:
            _parse_hash(password_hash)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        base = _user_root(entry.get("root"), default_root, relative_to, where)
        home = entry.get("home", "/")
        if not isinstance(home, str) or not PurePosixPath(home).is_absolute():
            raise ConfigError(f"{where}: home must be an absolute virtual path like '/pub'")
        writable = entry.get("writable", True)
        if not isinstance(writable, bool):
            raise ConfigError(f"{where}: writable must be true or false")
        users.append(
            User(
                login,
                password_hash,
                base_path=base,
                home_path=home,
                permissions=[Permission("/", readable=True, writable=writable)],
                maximum_connections=_positive(entry, "max_connections", int, where),
                write_speed_limit=_positive(entry, "max_download_rate", float, where),
                read_speed_limit=_positive(entry, "max_upload_rate", float, where),
            )
        )
    return users
