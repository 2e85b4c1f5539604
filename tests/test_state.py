"""The typed session state and its transitions, and ``Connection`` as the view over it.

Pure logic: no sockets, no server.
"""

from __future__ import annotations

import warnings
from pathlib import PurePosixPath

import pytest
import trio

import trio_ftp
from trio_ftp import Connection, Server, User
from trio_ftp.state import InvalidTransition, LoginState, SessionState


def _user() -> User:
    return User("alice", "pw", home_path="/home")


def test_login_sequence_moves_fields_together() -> None:
    state = SessionState()
    assert state.login is LoginState.ANONYMOUS
    assert not state.logged_in
    state.user_given("alice", _user())
    assert state.login is LoginState.USER_GIVEN
    assert state.login_name == "alice"
    state.login_succeeded(_user())
    assert state.logged_in
    assert state.current_directory == PurePosixPath("/home")
    user, was_logged_in = state.logged_out()
    assert user is not None
    assert was_logged_in
    assert state.user is None
    assert state.login is LoginState.USER_GIVEN
    assert state.logged_out() == (None, False)


def test_transitions_refuse_what_makes_no_sense() -> None:
    state = SessionState()
    with pytest.raises(InvalidTransition):
        state.login_succeeded(_user())  # no USER
    with pytest.raises(InvalidTransition):
        state.login_failed()  # no USER either
    state.user_given("alice", None)
    assert state.login_failed() == 1
    assert state.login_failed() == 2
    state.login_succeeded(_user())
    with pytest.raises(InvalidTransition):
        state.user_given("bob", None)  # log out first
    with pytest.raises(InvalidTransition):
        state.reinitialized(implicit_tls=False)
    with pytest.raises(InvalidTransition):
        state.tls_stopped()
    state.tls_started(implicit=False)
    with pytest.raises(InvalidTransition):
        state.tls_started(implicit=False)
    with pytest.raises(InvalidTransition):
        state.restart_at(10, 5)


def test_logged_in_user_is_typed_and_checked() -> None:
    state = SessionState()
    with pytest.raises(InvalidTransition):
        state.logged_in_user()
    state.user_given("alice", _user())
    state.login_succeeded(_user())
    assert state.logged_in_user().login == "alice"


def test_tls_resets_data_protection() -> None:
    state = SessionState(pbsz=0, prot="P")
    state.tls_started(implicit=False)  # RFC 4217 §4: AUTH starts data protection over
    assert (state.tls, state.pbsz, state.prot) == (True, None, "C")
    implicit = SessionState()
    implicit.tls_started(implicit=True)
    assert implicit.prot == "P"
    implicit.tls_stopped()
    assert not implicit.tls
    assert implicit.prot == "P"


def test_rein_returns_to_the_greeting_state() -> None:
    state = SessionState()
    state.user_given("alice", _user())
    state.login_succeeded(_user())
    state.transfer_type, state.epsv_all, state.mlst_facts = "I", True, ("size",)
    state.restart_at(5, 9)
    state.logged_out()
    state.reinitialized(implicit_tls=True)
    assert state.login is LoginState.ANONYMOUS
    assert state.login_name is None
    assert (state.transfer_type, state.epsv_all, state.mlst_facts) == ("A", False, None)
    assert (state.restart_offset, state.restart_end, state.prot) == (0, None, "P")
    assert state.current_directory == PurePosixPath("/")


def test_range_is_used_up_once() -> None:
    state = SessionState()
    state.restart_at(10, 19)
    assert state.take_range() == (10, 10)
    assert state.take_range() == (0, None)
    state.restart_at(7)
    assert state.take_range() == (7, None)


def test_a_pending_rename_lives_for_one_command() -> None:
    state = SessionState(rename_from=PurePosixPath("/a"))
    state.command_began("NOOP")
    assert state.rename_from is None
    state.rename_from = PurePosixPath("/a")
    state.command_began("RNTO")
    assert state.rename_from == PurePosixPath("/a")  # RNTO sees it...
    state.command_ended("RNTO")
    assert state.rename_from is None  # ...and uses it up, whatever happened


def test_connection_reads_and_writes_the_state() -> None:
    state = SessionState()
    connection = Connection(state)
    connection.transfer_type = "I"
    connection["restart_offset"] = 5
    assert state.transfer_type == "I"
    assert state.restart_offset == 5
    state.current_directory = PurePosixPath("/x")
    assert connection.current_directory == PurePosixPath("/x")
    assert connection.get("current_directory") == PurePosixPath("/x")


def test_absent_keys_follow_aioftp() -> None:
    """A key is present when its field holds a value; ``del``/``pop`` put it back."""
    connection = Connection()
    for key in ("user", "logged", "passive_server", "data_connection", "rename_from"):
        assert key not in connection
        assert connection.get(key, "default") == "default"
        with pytest.raises(KeyError):
            connection[key]
    connection.user = _user()
    assert "user" in connection
    assert connection.pop("user").login == "alice"
    assert "user" not in connection
    assert connection.state.user is None
    connection.logged = True
    assert "logged" in connection
    assert connection.state.logged_in
    del connection.logged
    assert "logged" not in connection
    assert "tls" in connection
    assert connection.tls is False


def test_passive_server_is_the_data_channel() -> None:
    from trio_ftp.datachannel import ActiveTarget

    connection = Connection()
    target = ActiveTarget("127.0.0.1", 2000)
    connection.passive_server = target
    assert connection.data_channel is target
    assert connection.state.data_channel is target
    assert "data_channel" in connection
    assert "passive_server" in connection


def test_user_keys_live_beside_the_state() -> None:
    connection = Connection(quota=10)
    connection["seen"] = ["a"]
    assert connection["quota"] == 10
    assert connection.seen == ["a"]
    assert set(connection) >= {"quota", "seen", "tls", "current_directory"}
    del connection["quota"]
    assert "quota" not in connection
    with pytest.raises(AttributeError):
        connection.missing  # type: ignore[attr-defined]  # noqa: B018


async def test_wait_for_wakes_on_a_typed_field() -> None:
    connection = Connection()
    woke: list[str] = []

    async def waiter() -> None:
        await connection.wait_for("passive_server", "data_connection")
        woke.append("both")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        from trio_ftp.datachannel import ActiveTarget

        connection.data_channel = ActiveTarget("127.0.0.1", 2000)
        await trio.testing.wait_all_tasks_blocked()
        assert woke == []
        a, _ = trio.testing.memory_stream_pair()
        connection.data_connection = a
    assert woke == ["both"]


def test_deprecated_names_warn_and_still_import() -> None:
    for name in ("AuthenticationFailed", "GuardedPathIO"):
        assert name not in trio_ftp.__all__
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert getattr(trio_ftp, name) is not None
        assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    with pytest.raises(AttributeError):
        trio_ftp.NoSuchName  # type: ignore[attr-defined]  # noqa: B018


def test_throttles_are_made_when_a_transfer_first_asks() -> None:
    """An idle session holds no throttles; ``limit_by`` (the login) starts over."""
    from trio_ftp.throttle import ThrottleRegistry

    server = Server([User()], write_speed_limit=1000)
    registry = ThrottleRegistry(server, burst=1024)
    connection = Connection()
    connection.limit_by(registry, None)
    assert connection._throttles is None
    first = connection.write_throttle
    assert first.current_rate() == 1000
    assert connection.write_throttle is first  # made once
    user = User("bob", "pw", write_speed_limit=10)
    connection.limit_by(registry, user)
    assert connection._throttles is None
    assert connection.write_throttle.current_rate() == 10  # the narrowest limit
    assert Connection().read_throttle.current_rate() is None  # detached: unlimited
