"""Session behaviour over in-memory streams: exact replies, sequencing, timeouts, bad input."""

from __future__ import annotations

import logging
from pathlib import PurePosixPath

import pytest
import trio
import trio.testing
from memory_client import MemoryClient, start_memory_session

from trio_ftp import (
    AbstractUserManager,
    GetUserResponse,
    MemoryPathIO,
    MemoryUserManager,
    Permission,
    ReplyError,
    Server,
    User,
    command,
)
from trio_ftp.conditions import worker
from trio_ftp.session import MAX_QUEUED_COMMANDS


def memory_server(**kwargs):
    users = kwargs.pop(
        "users",
        [
            User("user", "pw"),
            User(permissions=[Permission("/", writable=False)]),
        ],
    )
    return Server(users, path_io_factory=MemoryPathIO, **kwargs)


async def logged_in(nursery, server, login="user", password="pw"):
    client = await start_memory_session(nursery, server)
    assert (await client.reply())[0] == "220"
    assert await client.code(f"USER {login}") == "331"
    assert await client.code(f"PASS {password}") == "230"
    return client


async def test_greeting_and_quit(nursery):
    """A session greets with 220 and QUIT answers 221 then closes the connection."""
    client = await start_memory_session(nursery, memory_server())
    assert (await client.reply())[0] == "220"
    assert await client.code("QUIT") == "221"
    assert await client.closed()


async def test_commands_before_login_get_530(nursery):
    """File commands before login are refused with 530, and the session goes on."""
    client = await start_memory_session(nursery, memory_server())
    await client.reply()
    for line in ("PWD", "CWD /", "LIST", "RETR x", "STOR x", "MKD d", "PASV", "SIZE x"):
        assert await client.code(line) == "530", line
    assert await client.code("NOOP") == "200"


async def test_login_sequences(nursery, autojump_clock):
    """Wrong password 530, PASS without USER 503, anonymous with any password 230."""
    server = memory_server()
    client = await start_memory_session(nursery, server)
    await client.reply()
    assert await client.code("PASS x") == "503"
    assert await client.code("USER user") == "331"
    assert await client.code("PASS wrong") == "530"
    assert await client.code("PWD") == "530"
    assert await client.code("USER nobody") == "331"  # no user enumeration
    assert await client.code("PASS pw") == "530"
    assert await client.code("USER anonymous") == "331"
    assert await client.code("PASS me@example.com") == "230"
    assert await client.code("PASS again") == "230"


async def test_unknown_command_502_and_syntax(nursery):
    """Unknown verbs get 502; bad arguments get 501/504."""
    client = await logged_in(nursery, memory_server())
    assert await client.code("XYZZY") == "502"
    assert await client.code("REST abc") == "501"
    assert await client.code("TYPE Z") == "504"
    assert await client.code("OPTS FOO") == "501"


async def test_pwd_quotes_and_mkd(nursery):
    """MKD answers 257 with the quoted path, embedded quotes doubled (RFC 959 appendix II)."""
    client = await logged_in(nursery, memory_server())
    code, lines = await client.command('MKD a"b')
    assert (code, lines) == ("257", ['"/a""b" created'])
    assert await client.code('CWD a"b') == "250"
    assert await client.command("PWD") == ("257", ['"/a""b" is the current directory'])
    assert await client.code("CDUP") == "250"
    assert await client.command("PWD") == ("257", ['"/" is the current directory'])


async def test_dotdot_never_leaves_root(nursery):
    """CWD with more .. than depth stays at /."""
    client = await logged_in(nursery, memory_server())
    assert await client.code("CWD ../../..") == "250"
    assert await client.command("PWD") == ("257", ['"/" is the current directory'])


async def test_read_only_user_cannot_write(nursery):
    """The anonymous read-only user is refused every write: 550, and 553 for STOR."""
    server = memory_server()
    client = await logged_in(nursery, server, "anonymous", "x")
    for line in ("MKD d", "DELE /", "RMD /", "RNFR /", "MKD newdir"):
        assert await client.code(line) == "550", line
    for line, refusal in (("STOR f", "553"), ("APPE f", "550"), ("STOU", "553")):
        assert await client.code("PASV") == "227"
        assert await client.code(line) == refusal, line


async def test_rename_sequence(nursery):
    """RNTO without RNFR is 503; RNFR+RNTO renames."""
    client = await logged_in(nursery, memory_server())
    assert await client.code("RNTO b") == "503"
    assert await client.code("MKD a") == "257"
    assert await client.code("RNFR a") == "350"
    assert await client.code("RNTO b") == "250"
    assert await client.code("CWD b") == "250"
    assert await client.code("CWD /a") == "550"


async def test_feat_and_help_are_multiline(nursery):
    """FEAT is a 211 multi-line reply naming the extensions; HELP lists commands."""
    client = await logged_in(nursery, memory_server())
    code, lines = await client.command("FEAT")
    assert code == "211"
    features = {line.strip() for line in lines[1:-1]}
    assert {"EPSV", "MDTM", "SIZE", "REST STREAM", "UTF8"} <= features
    assert any(f.startswith("MLST type*;size*;modify*;") for f in features)
    code, lines = await client.command("HELP")
    assert code == "214"
    assert any("RETR" in line for line in lines)
    assert await client.command("HELP RETR") == ("214", ["RETR <file>: download"])


async def test_opts_mlst_selects_facts(nursery):
    """OPTS MLST narrows the facts MLST returns."""
    client = await logged_in(nursery, memory_server())
    assert await client.code("MKD d") == "257"
    assert await client.command("OPTS MLST type;size;") == ("200", ["MLST OPTS type;size;"])
    code, lines = await client.command("MLST d")
    assert code == "250"
    assert lines[1].startswith(" type=dir;size=")
    assert "modify=" not in lines[1]


async def test_line_too_long_closes(nursery):
    """A line over 4 KiB without a line end gets 500 and the connection is closed."""
    client = await start_memory_session(nursery, memory_server())
    await client.reply()
    await client.send(b"NOOP " + b"x" * 5000)
    assert (await client.reply())[0] == "500"
    assert await client.closed()


async def test_undecodable_bytes_get_501(nursery):
    """Bytes that are not UTF-8 get 501 and the session goes on."""
    client = await logged_in(nursery, memory_server())
    assert await client.code(b"CWD \xc3\x28\x80\r\n") == "501"
    assert await client.code("NOOP") == "200"


async def test_telnet_interrupt_before_abor(nursery):
    """lftp's IAC IP IAC DM before ABOR is stripped; ABOR with nothing running is 226."""
    client = await logged_in(nursery, memory_server())
    assert await client.code(b"\xff\xf4\xff\xf2ABOR\r\n") == "226"


async def test_idle_timeout_sends_421(nursery, autojump_clock):
    """A silent control connection gets 421 after idle_timeout and is closed."""
    client = await logged_in(nursery, memory_server(idle_timeout=30))
    start = trio.current_time()
    assert (await client.reply())[0] == "421"
    assert await client.closed()
    assert 29 <= trio.current_time() - start <= 31


async def test_idle_timeout_counts_between_complete_commands(nursery, autojump_clock):
    """A client trickling bytes that never end a line is dropped at idle_timeout after its
    last complete command; the trickle does not keep it alive."""
    client = await logged_in(nursery, memory_server(idle_timeout=30))
    start = trio.current_time()
    with trio.move_on_after(100):
        for _ in range(100):
            try:
                await client.send(b"N")
            except trio.BrokenResourceError:  # the server hung up
                break
            await trio.sleep(1)
    assert (await client.reply())[0] == "421"
    assert await client.closed()
    assert 29 <= trio.current_time() - start <= 31


async def test_http_request_as_first_line_closes_the_session(nursery):
    """A browser or cross-protocol request on the FTP port gets the connection closed, so
    its later lines are never run as FTP commands."""
    client = await start_memory_session(nursery, memory_server())
    assert (await client.reply())[0] == "220"
    await client.send(b"POST / HTTP/1.1\r\nHost: x\r\n\r\nUSER anonymous\r\n")
    assert await client.closed()


async def test_client_that_does_not_read_is_dropped(nursery, autojump_clock):
    """With socket_timeout, a client that never reads costs only its own session."""
    server = memory_server(socket_timeout=5)
    await start_memory_session(nursery, server, lockstep=True)
    await trio.testing.wait_all_tasks_blocked()
    assert len(server.connections) == 1
    await trio.sleep(6)
    assert server.connections == {}


async def test_handler_crash_becomes_451(nursery, caplog):
    """A handler bug answers 451, logs the traceback, and the session goes on."""

    class Buggy(Server):
        @command("BOOM")
        async def boom(self, connection, rest):
            raise RuntimeError("bug")

    client = await logged_in(nursery, Buggy([User("user", "pw")], path_io_factory=MemoryPathIO))
    assert await client.code("BOOM") == "451"
    assert await client.code("NOOP") == "200"
    assert any("handler failed" in r.message and r.exc_info for r in caplog.records)


async def test_idle_clock_stops_while_a_command_is_handled(nursery, autojump_clock):
    """A command that takes longer than idle_timeout is answered; idleness is only the
    time spent waiting for commands."""

    class Slow(Server):
        @command("SLOW")
        async def slow(self, connection, rest):
            await trio.sleep(100)
            connection.response("200", "done")
            return True

    server = Slow([User("user", "pw")], path_io_factory=MemoryPathIO, idle_timeout=30)
    client = await logged_in(nursery, server)
    assert await client.code("SLOW") == "200"
    start = trio.current_time()
    assert await client.code("NOOP") == "200"
    assert (await client.reply())[0] == "421"  # then the idle clock runs again
    assert 29 <= trio.current_time() - start <= 31


async def test_reply_error_from_handler(nursery):
    """A handler raising ReplyError answers exactly that reply."""

    class Picky(Server):
        @command("PICK")
        async def pick(self, connection, rest):
            raise ReplyError("504", "not that one")

    client = await logged_in(nursery, Picky([User("user", "pw")], path_io_factory=MemoryPathIO))
    assert await client.command("PICK") == ("504", ["not that one"])


class SlowPathIO(MemoryPathIO):
    async def exists(self, path):
        await trio.sleep(100)
        return True


async def test_path_timeout_answers_451(nursery, autojump_clock):
    """A path-IO call slower than path_timeout answers 451, and the session goes on."""
    server = Server([User("user", "pw")], path_io_factory=SlowPathIO, path_timeout=2)
    client = await logged_in(nursery, server)
    assert await client.code("MKD x") == "451"
    assert await client.code("NOOP") == "200"


class SlowManager(AbstractUserManager):
    async def get_user(self, login):
        await trio.sleep(100)
        return GetUserResponse.OK, User(), "ok"

    async def authenticate(self, user, password):
        return True


async def test_slow_user_manager_answers_421(nursery, autojump_clock):
    """A user manager slower than its timeout answers 421 and closes the session."""
    server = Server(SlowManager(timeout=3), path_io_factory=MemoryPathIO)
    client = await start_memory_session(nursery, server)
    await client.reply()
    assert await client.code("USER x") == "421"
    assert await client.closed()


async def test_maximum_connections_421(nursery):
    """The connection over maximum_connections gets 421; the slot frees on QUIT."""
    server = memory_server(maximum_connections=1)
    first = await start_memory_session(nursery, server)
    assert (await first.reply())[0] == "220"
    second = await start_memory_session(nursery, server)
    assert (await second.reply())[0] == "421"
    assert await second.closed()
    assert await first.code("QUIT") == "221"
    await first.closed()
    await trio.testing.wait_all_tasks_blocked()
    third = await start_memory_session(nursery, server)
    assert (await third.reply())[0] == "220"


async def test_user_maximum_connections(nursery, autojump_clock):
    """User.maximum_connections: the login over the limit gets 421 and is closed (only
    after the right password: USER alone neither takes a slot nor tells); logout frees
    the slot."""
    server = Server([User("user", "pw", maximum_connections=1)], path_io_factory=MemoryPathIO)
    first = await logged_in(nursery, server)
    second = await start_memory_session(nursery, server)
    await second.reply()
    assert await second.code("USER user") == "331"
    assert await second.code("PASS wrong") == "530"
    code, lines = await second.command("PASS pw")
    assert code == "421"
    assert "too many connections for 'user'" in lines[0]
    assert await second.closed()
    assert await first.code("QUIT") == "221"
    await first.closed()
    await trio.testing.wait_all_tasks_blocked()
    third = await logged_in(nursery, server)
    assert await third.code("NOOP") == "200"


async def test_user_command_alone_takes_no_slot(nursery):
    """Sessions that stop after USER do not lock the real user out."""
    server = Server([User("user", "pw", maximum_connections=1)], path_io_factory=MemoryPathIO)
    for _ in range(3):
        idle = await start_memory_session(nursery, server)
        await idle.reply()
        assert await idle.code("USER user") == "331"
    owner = await logged_in(nursery, server)
    assert await owner.code("NOOP") == "200"


async def test_connections_per_ip(nursery):
    """maximum_connections_per_ip: the address's next connection gets 421; others don't."""
    server = memory_server(maximum_connections_per_ip=2)
    first = await start_memory_session(nursery, server)
    second = await start_memory_session(nursery, server)
    third = await start_memory_session(nursery, server)
    codes = [(await c.reply())[0] for c in (first, second, third)]
    assert sorted(codes) == ["220", "220", "421"]  # which one is refused is up to scheduling
    refused = (first, second, third)[codes.index("421")]
    assert await refused.closed()
    first = next(c for c, code in zip((first, second, third), codes, strict=True) if code == "220")
    client_stream, server_stream = trio.testing.memory_stream_pair()
    nursery.start_soon(
        lambda: server.serve_connection(
            server_stream, peer=("127.0.0.9", 1), local=("127.0.0.1", 21)
        )
    )
    other = MemoryClient(client_stream)
    assert (await other.reply())[0] == "220"
    assert await first.code("QUIT") == "221"
    await first.closed()
    await trio.testing.wait_all_tasks_blocked()
    fourth = await start_memory_session(nursery, server)
    assert (await fourth.reply())[0] == "220"


async def test_failed_logins_are_slowed_and_limited(nursery, autojump_clock):
    """A failed PASS is answered after login_failure_delay; the third failure closes with 421."""
    client = await start_memory_session(nursery, memory_server(login_failure_delay=2))
    await client.reply()
    for attempt in range(3):
        assert await client.code("USER user") == "331"
        start = trio.current_time()
        code = await client.code("PASS wrong")
        assert trio.current_time() - start == pytest.approx(2)
        assert code == ("421" if attempt == 2 else "530")
    assert await client.closed()


async def test_slow_login_does_not_slow_others(nursery, autojump_clock):
    """While one session waits out its failure delay, another logs in at once."""
    server = memory_server(login_failure_delay=5)
    slow = await start_memory_session(nursery, server)
    fast = await start_memory_session(nursery, server)
    await slow.reply()
    await fast.reply()
    await slow.command("USER user")
    await slow.send("PASS wrong")
    start = trio.current_time()
    assert await fast.code("USER user") == "331"
    assert await fast.code("PASS pw") == "230"
    assert trio.current_time() - start < 1
    assert (await slow.reply())[0] == "530"


async def test_size_and_mdtm_and_type(nursery):
    """SIZE needs TYPE I (550 in ASCII mode); MDTM answers a 14-digit UTC time."""
    path_io_server = Server([User("user", "pw")], path_io_factory=MemoryPathIO)
    client = await logged_in(nursery, path_io_server)
    state = next(iter(path_io_server.connections.values())).path_io.inner
    async with state.open(PurePosixPath("/f.bin"), "wb") as f:
        await f.write(b"12345")
    assert await client.code("SIZE f.bin") == "550"
    assert await client.code("TYPE I") == "200"
    assert await client.command("SIZE f.bin") == ("213", ["5"])
    code, lines = await client.command("MDTM f.bin")
    assert code == "213"
    assert len(lines[0]) == 14
    assert lines[0].isdigit()
    assert await client.code("SIZE missing") == "550"


@pytest.mark.parametrize("verb", ["RETR", "STOR", "LIST", "NLST", "MLSD", "APPE"])
async def test_transfer_without_data_channel_is_425(nursery, verb):
    """A transfer command before PASV/EPSV/PORT/EPRT gets 425 (RFC 959 §5.4 lists no 503)."""
    client = await logged_in(nursery, memory_server())
    assert await client.code(f"{verb} x") == "425"


async def test_epsv_arguments(nursery):
    """EPSV with the wrong family gets 522; EPSV ALL then PASV gets 503."""
    client = await logged_in(nursery, memory_server())
    assert await client.code("EPSV 2") == "522"
    assert await client.code("EPSV bogus") == "522"
    assert await client.code("EPSV ALL") == "200"
    assert await client.code("PASV") == "503"


@pytest.mark.parametrize(
    "verb", ["CWD", "MKD", "RMD", "DELE", "RNFR", "RNTO", "SIZE", "MDTM", "REST", "TYPE"]
)
async def test_missing_argument_is_501(nursery, verb):
    """A command that needs an argument answers 501 without one (and changes nothing)."""
    client = await logged_in(nursery, memory_server())
    assert await client.code(verb) == "501"
    assert await client.code(f"{verb}   ") == "501"
    assert await client.command("PWD") == ("257", ['"/" is the current directory'])


async def test_minor_commands(nursery):
    """ALLO 202, MODE S/STRU F 200 (others 504), ACCT 202 once logged in."""
    client = await start_memory_session(nursery, memory_server())
    await client.reply()
    assert await client.code("ACCT x") == "502"
    await client.command("USER user")
    await client.command("PASS pw")
    assert await client.code("ACCT x") == "202"
    assert await client.code("ALLO 1000") == "202"
    assert await client.code("MODE S") == "200"
    assert await client.code("MODE B") == "504"
    assert await client.code("STRU F") == "200"
    assert await client.code("STRU R") == "504"


async def test_stat_without_and_with_path(nursery):
    """STAT: 211 session status; STAT dir: 213 ls -l listing on the control connection."""
    client = await logged_in(nursery, memory_server())
    code, lines = await client.command("STAT")
    assert code == "211"
    assert " logged in as user" in lines
    assert " no transfer in progress" in lines
    assert await client.code("MKD sub") == "257"
    assert await client.code("MKD sub/inner") == "257"
    code, lines = await client.command("STAT sub")
    assert code == "213"
    assert lines[1].strip().startswith("drwx")
    assert lines[1].endswith(" inner")
    assert await client.code("STAT missing") == "450"


async def test_rein_logs_out(nursery):
    """REIN answers 220 and forgets the login, directory and type."""
    client = await logged_in(nursery, memory_server())
    assert await client.code("MKD d") == "257"
    assert await client.code("CWD d") == "250"
    assert await client.code("TYPE I") == "200"
    assert await client.code("REIN") == "220"
    assert await client.code("PWD") == "530"
    await client.command("USER user")
    await client.command("PASS pw")
    assert await client.command("PWD") == ("257", ['"/" is the current directory'])
    _, lines = await client.command("STAT")
    assert " TYPE: ASCII; STRUcture: File; MODE: Stream" in lines


async def test_feat_follows_configuration(nursery):
    """FEAT names EPRT only while active mode is on, and no command a subclass removed."""
    on = await start_memory_session(nursery, memory_server())
    await on.reply()
    assert " EPRT" in (await on.command("FEAT"))[1]
    server = memory_server(active_mode=False)
    del server.commands_mapping["size"]
    off = await start_memory_session(nursery, server)
    await off.reply()
    _, lines = await off.command("FEAT")
    assert " EPRT" not in lines
    assert " SIZE" not in lines
    assert " MDTM" in lines


async def test_mfmt_sets_modification_time(nursery):
    """MFMT sets the time MDTM then reports; bad times are 501, missing files 550."""
    client = await logged_in(nursery, memory_server())
    assert await client.code("MKD d") == "257"
    assert await client.command("MFMT 20200102030405 d") == ("213", ["Modify=20200102030405; d"])
    assert await client.command("MDTM d") == ("213", ["20200102030405"])
    assert await client.code("MFMT 2020 d") == "501"
    assert await client.code("MFMT 20200102030405") == "501"
    assert await client.code("MFMT 20200102030405 missing") == "550"
    _, lines = await client.command("FEAT")
    assert " MFMT" in lines


async def test_mfmt_read_only_user(nursery):
    """MFMT needs the writable permission."""
    client = await logged_in(nursery, memory_server(), "anonymous", "x")
    assert await client.code("MFMT 20200102030405 /") == "550"


async def test_slots_never_drift(autojump_clock):
    """300 sessions ending every way (QUIT, disconnect, idle timeout, fatal error,
    cancellation) give back every server, address and user slot."""
    user = User("user", "pw", maximum_connections=50)
    server = Server(
        [user],
        path_io_factory=MemoryPathIO,
        maximum_connections=50,
        maximum_connections_per_ip=50,
        idle_timeout=10,
    )

    async def one_session(kind: int) -> None:
        async with trio.open_nursery() as nursery:
            client = await start_memory_session(nursery, server)
            await client.reply()
            await client.command("USER user")
            await client.command("PASS pw")
            if kind == 0:
                await client.command("QUIT")
            elif kind == 1:
                await client.stream.aclose()  # disconnect
                return
            elif kind == 2:
                await trio.sleep(11)  # idle timeout
            elif kind == 3:
                await client.send(b"X" * 5000)  # line too long: fatal
                await client.reply()
            else:
                nursery.cancel_scope.cancel()
                return
            await client.closed()

    for batch in range(10):
        async with trio.open_nursery() as nursery:
            for kind in range(30):
                nursery.start_soon(one_session, (batch + kind) % 5)
        await trio.testing.wait_all_tasks_blocked()
    assert server.connections == {}
    assert server.available_connections.value == 50
    assert server.runtime.connections_per_ip == {}
    assert server.user_manager.available_connections[user].value == 50


async def test_password_never_logged(nursery, caplog):
    """At DEBUG level, neither a right nor a wrong password appears in any log record."""
    caplog.set_level("DEBUG", logger="trio_ftp")
    server = memory_server(login_failure_delay=0)
    client = await start_memory_session(nursery, server)
    await client.reply()
    await client.command("USER user")
    await client.command("PASS wrong-Secret-1")
    await client.command("USER user")
    await client.command("PASS pw")
    await client.command("QUIT")
    await client.closed()
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "PASS ****" in text or "'****'" in text
    assert "wrong-Secret-1" not in text
    assert "pw'" not in text


async def test_failed_logins_are_capped_per_address_across_sessions(nursery, autojump_clock):
    """A guesser who reconnects is still stopped: after N failures from its address, PASS
    and new sessions get 421 until the window has passed."""
    server = memory_server(
        maximum_login_failures_per_ip=3,
        login_failure_window=60,
        maximum_login_attempts=None,
        login_failure_delay=1,
    )
    first = await start_memory_session(nursery, server)
    await first.reply()
    await first.command("USER user")
    for _ in range(3):
        assert (await first.command("PASS wrong"))[0] == "530"
    assert (await first.command("PASS pw"))[0] == "421"  # even the right password
    assert await first.closed()
    refused = await start_memory_session(nursery, server)
    assert (await refused.reply())[0] == "421"
    await trio.sleep(61)
    again = await start_memory_session(nursery, server)
    assert (await again.reply())[0] == "220"
    await again.command("USER user")
    assert (await again.command("PASS pw"))[0] == "230"


class _SlowHashing(MemoryUserManager):
    async def authenticate(self, user: User, password: str) -> bool:
        await trio.sleep(0.4)  # like a password hash check
        return await super().authenticate(user, password)


@pytest.mark.parametrize("login", ["user", "nosuchuser"])
async def test_failed_login_looks_the_same_for_unknown_and_known_users(
    nursery, autojump_clock, login
):
    """Unknown and known users get the same 331, the same 530, at the same moment."""
    server = memory_server(users=_SlowHashing([User("user", "pw")]), login_failure_delay=1)
    client = await start_memory_session(nursery, server)
    await client.reply()
    assert await client.command(f"USER {login}") == ("331", ["password required"])
    start = trio.current_time()
    assert await client.command("PASS wrong") == ("530", ["login incorrect"])
    assert trio.current_time() - start == pytest.approx(1.0)


async def test_disconnect_with_a_passive_listener_is_not_an_idle_timeout(nursery, caplog):
    """A client that leaves while its PASV listener waits ends the session without an
    idle-timeout 421 in the log."""
    caplog.set_level(logging.INFO, logger="trio_ftp")
    server = memory_server(idle_timeout=30)
    client = await logged_in(nursery, server)
    assert await client.code("PASV") == "227"
    await client.stream.aclose()
    await trio.testing.wait_all_tasks_blocked()
    with trio.fail_after(5):
        while server.connections:  # noqa: ASYNC110 (the session ends in another task)
            await trio.sleep(0.01)
    assert not any("idle timeout" in record.getMessage() for record in caplog.records)


# before login ----------------------------------------------------------------------------------
#: The only verbs a client may send before logging in: logging in (RFC 959 §4.1.1), leaving,
#: protecting the control connection first (RFC 4217), and asking what the server is; SITE
#: leaves it to each subcommand (SITE HELP is open, SITE CHMOD gets 530: test_site_hash.py).
BEFORE_LOGIN = frozenset(
    {"USER", "PASS", "ACCT", "QUIT", "AUTH", "PBSZ", "PROT", "CCC", "SITE"}
    | {"FEAT", "SYST", "HELP", "NOOP", "OPTS", "STAT"}
)
BUILT_IN_VERBS = sorted(verb.upper() for verb in memory_server().commands_mapping)


def test_before_login_flags_are_exactly_the_allowlist():
    """The command table marks exactly BEFORE_LOGIN as usable before a login."""
    specs = memory_server().command_specs
    assert {verb for verb, spec in specs.items() if spec.before_login} == BEFORE_LOGIN


@pytest.mark.parametrize("verb", sorted(set(BUILT_IN_VERBS) - BEFORE_LOGIN))
async def test_every_other_verb_gets_530_before_login(nursery, verb):
    """Every built-in verb outside the allowlist (ABOR, TYPE, REIN, SITE... included) gets
    530 before login, with or without an argument, and the session goes on."""
    client = await start_memory_session(nursery, memory_server())
    await client.reply()
    assert await client.code(verb) == "530"
    assert await client.code(f"{verb} x") == "530"
    assert await client.code("NOOP") == "200"


async def test_custom_verbs_need_login_unless_flagged(nursery):
    """A custom @command verb, and a verb put straight into commands_mapping, get 530 before
    login; one registered with before_login=True runs; after login all of them run."""

    class Custom(Server):
        @command("XPRIV")
        async def xpriv(self, connection, rest):
            connection.response("200", "private")
            return True

        @command("XPUB", before_login=True)
        async def xpub(self, connection, rest):
            connection.response("200", "public")
            return True

    async def raw(connection, rest):
        connection.response("200", "raw")
        return True

    server = Custom([User("user", "pw")], path_io_factory=MemoryPathIO)
    server.commands_mapping["xraw"] = raw
    client = await start_memory_session(nursery, server)
    await client.reply()
    assert [await client.code(verb) for verb in ("XPRIV", "XRAW", "XPUB")] == ["530", "530", "200"]
    assert await client.code("USER user") == "331"
    assert await client.code("PASS pw") == "230"
    assert [await client.code(verb) for verb in ("XPRIV", "XRAW", "XPUB")] == ["200"] * 3


async def test_abor_without_transfer_closes_the_data_channel(nursery):
    """ABOR with a PASV listener open but no transfer: 226, and the listener is gone (the
    next transfer needs a new PASV: 425 without one)."""
    client = await logged_in(nursery, memory_server())
    assert await client.code("MKD d") == "257"
    assert await client.code("PASV") == "227"
    assert await client.command("ABOR") == ("226", ["nothing to abort"])
    assert await client.code("LIST d") == "425"


# commands queued behind a transfer (a transfer with no data connection) ------------------------
class _Waiting(Server):
    """``XWAIT <seconds>``: a transfer that only waits, then answers 226 (ABOR: 426, 226)."""

    @command("XWAIT")
    async def xwait(self, connection, rest):
        @worker
        async def wait(server, connection):
            await trio.sleep(float(rest))
            connection.response("226", "waited")

        connection.response("150", "waiting")
        connection.start_transfer(wait, self, connection)
        return True


def waiting_server(**kwargs):
    return _Waiting([User("user", "pw")], path_io_factory=MemoryPathIO, **kwargs)


async def test_queued_commands_run_after_the_transfer(nursery, autojump_clock):
    """PWD and MKD sent behind a transfer are answered after its 226, in order; NOOP and
    STAT sent behind them are answered at once."""
    client = await logged_in(nursery, waiting_server())
    await client.send(b"XWAIT 100\r\nPWD\r\nMKD d\r\nNOOP\r\nSTAT\r\n")
    assert (await client.reply())[0] == "150"
    assert (await client.reply())[0] == "200"
    assert (await client.reply())[0] == "211"
    assert trio.current_time() < 1
    assert await client.reply() == ("226", ["waited"])
    assert trio.current_time() == pytest.approx(100)
    assert [(await client.reply())[0] for _ in range(2)] == ["257", "257"]


async def test_quit_behind_a_transfer_waits_for_it(nursery, autojump_clock):
    """QUIT sent during a transfer: the transfer ends first (226), then 221 and the close
    (RFC 959 §4.1.1)."""
    client = await logged_in(nursery, waiting_server())
    await client.send(b"XWAIT 100\r\nQUIT\r\n")
    assert [(await client.reply())[0] for _ in range(3)] == ["150", "226", "221"]
    assert await client.closed()
    assert trio.current_time() == pytest.approx(100)


async def test_idle_clock_stops_while_commands_are_queued(nursery, autojump_clock):
    """No idle timeout during a transfer, nor while the commands queued behind it run; it
    counts again from the last of them."""

    class SlowPwd(_Waiting):
        @command("PWD")
        async def pwd(self, connection, rest):
            await trio.sleep(50)
            connection.response("257", '"/"')
            return True

    server = SlowPwd([User("user", "pw")], path_io_factory=MemoryPathIO, idle_timeout=30)
    client = await logged_in(nursery, server)
    await client.send(b"XWAIT 100\r\nPWD\r\nPWD\r\n")
    assert [(await client.reply())[0] for _ in range(4)] == ["150", "226", "257", "257"]
    done = trio.current_time()
    assert done == pytest.approx(200)
    assert (await client.reply())[0] == "421"
    assert trio.current_time() - done == pytest.approx(30)


async def test_eof_behind_queued_commands_runs_them(nursery, autojump_clock):
    """A client that sends commands behind a transfer and then closes its side still has
    them run (as without pipelining): the transfer ends, they are answered, the session ends."""
    server = waiting_server()
    client = await logged_in(nursery, server)
    await client.send(b"XWAIT 10\r\nMKD d\r\nCWD d\r\nPWD\r\n")
    await client.stream.send_eof()
    codes = [(await client.reply())[0] for _ in range(5)]
    assert codes == ["150", "226", "257", "250", "257"]
    assert await client.closed()
    assert trio.current_time() == pytest.approx(10)


async def test_eof_with_nothing_queued_cancels_the_transfer(nursery, autojump_clock):
    """EOF during a transfer with nothing queued ends the session at once (the transfer is
    cancelled with it: 426, and no 226 since no ABOR asked), as before pipelining."""
    server = waiting_server()
    client = await logged_in(nursery, server)
    assert await client.code("XWAIT 100") == "150"
    await client.stream.send_eof()
    assert (await client.reply())[0] == "426"
    assert await client.closed()
    assert trio.current_time() < 1


async def test_abor_overtakes_queued_commands(nursery, autojump_clock):
    """ABOR behind queued commands aborts the transfer at once (426, 226); the commands
    queued before it then run in order."""
    client = await logged_in(nursery, waiting_server())
    await client.send(b"XWAIT 100\r\nPWD\r\nSYST\r\nABOR\r\n")
    codes = [(await client.reply())[0] for _ in range(5)]
    assert codes == ["150", "426", "226", "257", "215"]
    assert trio.current_time() < 1


async def test_too_many_queued_commands_get_421(nursery, autojump_clock):
    """MAX_QUEUED_COMMANDS behind a transfer are fine; one more aborts the transfer (426,
    226), answers 421 and closes, without running the queued ones."""
    client = await logged_in(nursery, waiting_server())
    await client.send(b"XWAIT 10\r\n" + b"PWD\r\n" * MAX_QUEUED_COMMANDS)
    codes = [(await client.reply())[0] for _ in range(MAX_QUEUED_COMMANDS + 2)]
    assert codes == ["150", "226"] + ["257"] * MAX_QUEUED_COMMANDS
    await client.send(b"XWAIT 10\r\n" + b"PWD\r\n" * (MAX_QUEUED_COMMANDS + 1))
    assert [(await client.reply())[0] for _ in range(4)] == ["150", "426", "226", "421"]
    assert await client.closed()
    assert trio.current_time() == pytest.approx(10)


async def test_decoding_errors_behind_a_transfer_keep_their_turn(nursery, autojump_clock):
    """A line that does not decode, sent behind a transfer and a queued command, is
    answered 501 in its turn, after them."""
    client = await logged_in(nursery, waiting_server())
    await client.send(b"XWAIT 10\r\nPWD\r\nBAD\0LINE\r\nSYST\r\n")
    codes = [(await client.reply())[0] for _ in range(5)]
    assert codes == ["150", "226", "257", "501", "215"]
