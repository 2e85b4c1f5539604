"""trio_ftp.config: every refusal of a bad hash, TOML file or [[users]] entry, and what a good
entry becomes. Unit tests with no server: each checks the value or the one-line message."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from trio_ftp import User
from trio_ftp.config import (
    ConfigError,
    HashedUserManager,
    hash_password,
    load_toml,
    users_from_config,
    verify_password,
)

#: A cheap hash (n=2) keeps these tests fast; the format and checks are the same as the default.
CHEAP = hash_password("pw", n=2, r=1, p=1)
SALT = base64.b64encode(b"salt").decode()
DIGEST = base64.b64encode(b"d" * 32).decode()


def entry(**overrides: Any) -> dict[str, Any]:
    """A valid [[users]] table with ``overrides`` applied (None removes the key)."""
    table: dict[str, Any] = {"login": "ann", "password_hash": CHEAP}
    table.update(overrides)
    return {key: value for key, value in table.items() if value is not None}


def refusal(entries: Any, root: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        users_from_config(entries, default_root=root)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_cheap_hash_verifies_only_its_password():
    assert CHEAP.startswith("scrypt$2$1$1$")
    assert verify_password("pw", CHEAP)
    assert not verify_password("other", CHEAP)


@pytest.mark.parametrize(
    "encoded",
    [
        f"scrypt$x$8$1${SALT}${DIGEST}",  # n not a number
        f"scrypt$4$8$1$not*base64${DIGEST}",  # salt not base64
        f"scrypt$4$8$1${SALT}$###",  # hash not base64
        f"scrypt$3$8$1${SALT}${DIGEST}",  # n not a power of two
        f"scrypt$1$8$1${SALT}${DIGEST}",  # n too small
        f"scrypt${2**21}$8$1${SALT}${DIGEST}",  # n too large (memory)
        f"scrypt$4$0$1${SALT}${DIGEST}",  # r zero
        f"scrypt$4$65$1${SALT}${DIGEST}",  # r too large
        f"scrypt$4$8$0${SALT}${DIGEST}",  # p zero
        f"scrypt$4$8$17${SALT}${DIGEST}",  # p too large
        f"scrypt$4$8$1$${DIGEST}",  # empty salt
        f"scrypt$4$8$1${SALT}$",  # empty hash
        f"bcrypt$4$8$1${SALT}${DIGEST}",  # another scheme
        "",
    ],
)
def test_malformed_hash_never_verifies_and_is_refused_in_config(encoded, tmp_path):
    """A malformed hash matches no password, and a config naming it is refused, naming the user."""
    assert not verify_password("pw", encoded)
    message = refusal([entry(password_hash=encoded)], tmp_path)
    assert message.startswith("user 'ann': ")
    assert "hash" in message


def test_good_entry_becomes_a_user(tmp_path):
    """Every key reaches the User: root, home, read-only, connection and rate limits."""
    (tmp_path / "pub").mkdir()
    [user] = users_from_config(
        [
            entry(
                root=str(tmp_path),
                home="/pub",
                writable=False,
                max_connections=3,
                max_download_rate=1000,
                max_upload_rate=2.5,
            )
        ],
        default_root=Path("/nonexistent"),
    )
    assert isinstance(user, User)
    assert (user.login, user.password) == ("ann", CHEAP)
    assert user.base_path == tmp_path.resolve()
    assert str(user.home_path) == "/pub"
    assert [(p.readable, p.writable) for p in user.permissions] == [(True, False)]
    assert user.maximum_connections == 3
    assert user.write_speed_limit == 1000
    assert user.read_speed_limit == 2.5


def test_defaults_root_home_writable(tmp_path):
    [user] = users_from_config([entry()], default_root=tmp_path)
    assert user.base_path == tmp_path.resolve()
    assert str(user.home_path) == "/"
    assert user.permissions[0].writable is True
    assert user.maximum_connections is None
    assert user.write_speed_limit is None


def test_relative_root_is_relative_to_the_config_file(tmp_path):
    (tmp_path / "data").mkdir()
    [user] = users_from_config(
        [entry(root="data")], default_root=Path("/nonexistent"), relative_to=tmp_path
    )
    assert user.base_path == (tmp_path / "data").resolve()


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ("ann", "users must be an array of tables"),
        ({"login": "ann"}, "users must be an array of tables"),
        (["ann"], "users[0] must be a table"),
        ([{"login": "ann", "password_hash": CHEAP, "colour": 1}], "unknown key(s) colour"),
        ([entry(login=None)], "users[0]: login must be a non-empty string"),
        ([entry(login="")], "users[0]: login must be a non-empty string"),
        ([entry(login="a:b")], "users[0]: login must be a non-empty string"),
        ([entry(login=7)], "users[0]: login must be a non-empty string"),
        ([entry(password_hash=None)], "user 'ann': password_hash is required"),
        ([entry(root=5)], "user 'ann': root must be a string"),
        ([entry(home="pub")], "user 'ann': home must be an absolute virtual path"),
        ([entry(home=1)], "user 'ann': home must be an absolute virtual path"),
        ([entry(writable="yes")], "user 'ann': writable must be true or false"),
        ([entry(max_connections=0)], "max_connections must be a positive number, got 0"),
        ([entry(max_connections=True)], "max_connections must be a positive number, got True"),
        ([entry(max_connections=1.5)], "max_connections must be a positive number, got 1.5"),
        ([entry(max_download_rate=-1)], "max_download_rate must be a positive number"),
        ([entry(max_upload_rate="fast")], "max_upload_rate must be a positive number"),
    ],
)
def test_bad_entries_are_refused_with_where_and_why(entries, expected, tmp_path):
    assert expected in refusal(entries, tmp_path)


def test_second_entry_is_named_by_index(tmp_path):
    assert refusal([entry(), {"login": ""}], tmp_path).startswith("users[1]:")


def test_root_that_is_not_a_directory_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    for root in [tmp_path / "missing", tmp_path / "file"]:
        message = refusal([entry(root=str(root))], tmp_path)
        assert message == f"user 'ann': root {str(root)!r} is not a directory"


def test_load_toml_reads_a_table(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("port = 21\n[[users]]\nlogin = 'x'\n")
    assert load_toml(path) == {"port": 21, "users": [{"login": "x"}]}
    assert load_toml(str(path)) == load_toml(path)


def test_load_toml_refuses_missing_unreadable_and_invalid(tmp_path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match=r"cannot read '.*missing\.toml': No such file"):
        load_toml(missing)
    with pytest.raises(ConfigError, match=r"cannot read .*: Is a directory"):
        load_toml(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("port = [\n\n")
    with pytest.raises(ConfigError, match=r"'.*bad\.toml' is not valid TOML: ") as caught:
        load_toml(bad)
    assert "\n" not in str(caught.value)


async def test_hashed_user_manager_checks_the_hash_and_lets_anonymous_in(tmp_path):
    """Only the right password opens a hashed user; a user without password needs none."""
    hashed = User("ann", CHEAP, base_path=tmp_path)
    anonymous = User(base_path=tmp_path)
    manager = HashedUserManager([hashed, anonymous])
    assert await manager.authenticate(hashed, "pw")
    assert not await manager.authenticate(hashed, "wrong")
    assert not await manager.authenticate(hashed, CHEAP)  # the hash itself is not a password
    assert await manager.authenticate(anonymous, "anything")
