"""users.py: reprs that logs show, the listing shortcut's refusal when get_permissions is
overridden, and connection slots of users the manager was not built with."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from trio_ftp import MemoryUserManager, Permission, User
from trio_ftp.users import AvailableConnections

P = PurePosixPath


def test_reprs_name_the_fields_but_never_the_password():
    user = User(
        "ann",
        "hunter2",
        base_path="/srv",
        home_path="/pub",
        permissions=[Permission("/pub", writable=False)],
        maximum_connections=2,
    )
    text = repr(user)
    assert text == (
        "User('ann', base_path=PosixPath('/srv'), home_path=PurePosixPath('/pub'), "
        "permissions=[Permission(PurePosixPath('/pub'), readable=True, writable=False)], "
        "maximum_connections=2)"
    )
    assert "hunter2" not in text


async def test_children_permission_is_none_when_get_permissions_is_overridden():
    """A subclass deciding per path cannot be asked once for a whole directory."""

    class PerFile(User):
        async def get_permissions(self, path: str | PurePosixPath) -> Permission:
            return Permission(path, writable=str(path).endswith(".txt"))

    user = PerFile("ann", "pw")
    assert user.children_permission(P("/")) is None
    assert not (await user.get_permissions(P("/a.bin"))).writable
    plain = User("ann", "pw", permissions=[Permission("/", writable=False)])
    shared = plain.children_permission(P("/d"))
    assert shared is not None
    assert not shared.writable


def test_children_permission_is_none_when_a_rule_names_a_child():
    user = User("ann", "pw", permissions=[Permission("/"), Permission("/d/x", writable=False)])
    assert user.children_permission(P("/d")) is None
    assert user.children_permission(P("/e")) is not None


async def test_user_added_after_construction_has_no_slot_to_take():
    """A User the manager was not built with (appended later, or made fresh by a subclass's
    get_user) has no slot table entry: it logs in and out, unlimited, without error."""
    manager = MemoryUserManager([User("ann", "pw", maximum_connections=1)])
    late = User("bob", "pw", maximum_connections=1)
    manager.users.append(late)
    assert await manager.notify_login(late)
    assert await manager.notify_login(late)
    await manager.notify_logout(late)
    assert late not in manager.available_connections
    ann = manager.users[0]
    assert await manager.notify_login(ann)
    assert not await manager.notify_login(ann)  # the built-in user's slot is taken
    await manager.notify_logout(ann)
    assert await manager.notify_login(ann)


def test_available_connections_are_loud_about_bookkeeping_bugs():
    slots = AvailableConnections(1)
    with pytest.raises(ValueError, match="Too many releases"):
        slots.release()
    slots.acquire()
    assert slots.locked()
    with pytest.raises(ValueError, match="Too many acquires"):
        slots.acquire()
    unlimited = AvailableConnections(None)
    unlimited.acquire()
    unlimited.release()
    assert not unlimited.locked()
