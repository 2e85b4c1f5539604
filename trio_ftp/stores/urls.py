"""``open_store(url)``: a state store named by a URL (the CLI's ``--state-store``)."""

from __future__ import annotations

import urllib.parse

from .base import StateStore

__all__ = ["open_store"]


def open_store(url: str) -> StateStore:
    """The store ``url`` names.

    * ``redis://[user:password@]host:port/db`` or ``rediss://...`` (TLS): a
      :class:`~trio_ftp.stores.RedisStore` (needs the ``redis`` extra);
    * ``sqlite:///absolute/path.db``: a :class:`~trio_ftp.stores.MachineStore` (the workers
      of one machine).

    Raises:
        ValueError: any other URL.
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in ("redis", "rediss"):
        try:
            from .redis_store import RedisStore

            return RedisStore(url)
        except ImportError:
            raise ValueError(
                f"state store {url!r}: Redis needs redis-py (pip install trio_ftp[redis])"
            ) from None
    if scheme == "sqlite":
        from .machine import MachineStore

        path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
        if not path.startswith("/"):
            raise ValueError(f"state store {url!r}: sqlite:///absolute/path.db expected")
        return MachineStore(path)
    raise ValueError(
        f"state store {url!r}: expected redis://host:port/db, rediss://... or "
        "sqlite:///absolute/path.db"
    )
