"""The grouped options: validation of each group, the flat aioftp keywords, frozen copies."""

from __future__ import annotations

import dataclasses
import inspect
import ipaddress
import ssl

import pytest
from memory_client import start_memory_session

from trio_ftp import MemoryPathIO, Server, User
from trio_ftp.base import ServerBase
from trio_ftp.options import (
    DataChannelOptions,
    FileOptions,
    FlatOptionAttributes,
    Limits,
    LoginPolicy,
    ProtocolOptions,
    ProxyOptions,
    ServerOptions,
    Timeouts,
    TLSOptions,
)
from trio_ftp.runtime import ServerRuntime

CONTEXT = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)


def choose_address(connection):
    return None


#: Every flat keyword ServerOptions covers, each different from its default.
FLAT = {
    "block_size": 4096,
    "socket_timeout": 7.0,
    "idle_timeout": 8.0,
    "wait_future_timeout": 0,
    "path_timeout": 9.0,
    "callback_timeout": 10.0,
    "maximum_connections": 11,
    "data_ports": (50000, 50001),
    "passive_address": "192.0.2.1",
    "active_mode": False,
    "permit_foreign_addresses": True,
    "permit_privileged_ports": True,
    "encoding": "latin-1",
    "ssl": None,
    "welcome_message": "hello there",
    "system_type": "custom system",
    "tls_context": CONTEXT,
    "tls_control_required": True,
    "tls_data_required": True,
    "tls_require_session_reuse": True,
    "tls_strict_eof": True,
    "tls_allow_ccc": True,
    "tls_handshake_timeout": 3.0,
    "maximum_connections_per_ip": 2,
    "login_failure_delay": 0,
    "maximum_login_attempts": 5,
    "maximum_login_failures_per_ip": 6,
    "login_failure_window": 60.0,
    "atomic_uploads": True,
    "permit_special_mode_bits": True,
    "passive_address_map": ((ipaddress.ip_network("10.0.0.0/8"), "192.0.2.8"),),
    "data_peer_check": "transport",
    "proxy_protocol": "optional",
    "proxy_protocol_from": (ipaddress.ip_network("127.0.0.0/8"),),
    "proxy_protocol_timeout": 2.0,
    "proxy_protocol_data": True,
}

#: The same configuration, built group by group.
GROUPED = ServerOptions(
    tls=TLSOptions(
        context=CONTEXT,
        control_required=True,
        data_required=True,
        session_reuse_required=True,
        strict_eof=True,
        allow_ccc=True,
        handshake_timeout=3.0,
    ),
    timeouts=Timeouts(socket=7.0, idle=8.0, data_connection_wait=0, path_io=9.0, user_code=10.0),
    limits=Limits(block_size=4096, connections=11, connections_per_ip=2),
    login=LoginPolicy(
        failure_delay=0, failures_per_session=5, failures_per_ip=6, failure_window=60.0
    ),
    data_channels=DataChannelOptions(
        ports=(50000, 50001),
        passive_address="192.0.2.1",
        active_mode=False,
        permit_foreign_addresses=True,
        permit_privileged_ports=True,
        passive_address_map={"10.0.0.0/8": "192.0.2.8"},
        peer_check="transport",
    ),
    protocol=ProtocolOptions(
        encoding="latin-1", welcome_message="hello there", system_type="custom system"
    ),
    files=FileOptions(atomic_uploads=True, permit_special_mode_bits=True),
    proxy=ProxyOptions(mode="optional", trusted=("127.0.0.0/8",), header_timeout=2.0, data=True),
)


def test_flat_keywords_build_the_same_options_as_the_groups():
    """Server(**flat) and ServerOptions.from_keywords(**flat) equal the options built group
    by group: each keyword lands in its field (every value here differs from its default)."""
    assert ServerOptions.from_keywords(**FLAT) == GROUPED
    assert Server(**FLAT).options == GROUPED
    assert ServerOptions.from_keywords(**FLAT) != ServerOptions()


#: Where each flat keyword lands: (group, field).
FIELD_OF = {
    "block_size": ("limits", "block_size"),
    "socket_timeout": ("timeouts", "socket"),
    "idle_timeout": ("timeouts", "idle"),
    "wait_future_timeout": ("timeouts", "data_connection_wait"),
    "path_timeout": ("timeouts", "path_io"),
    "callback_timeout": ("timeouts", "user_code"),
    "maximum_connections": ("limits", "connections"),
    "data_ports": ("data_channels", "ports"),
    "passive_address": ("data_channels", "passive_address"),
    "active_mode": ("data_channels", "active_mode"),
    "permit_foreign_addresses": ("data_channels", "permit_foreign_addresses"),
    "permit_privileged_ports": ("data_channels", "permit_privileged_ports"),
    "encoding": ("protocol", "encoding"),
    "welcome_message": ("protocol", "welcome_message"),
    "system_type": ("protocol", "system_type"),
    "tls_context": ("tls", "context"),
    "tls_control_required": ("tls", "control_required"),
    "tls_data_required": ("tls", "data_required"),
    "tls_require_session_reuse": ("tls", "session_reuse_required"),
    "tls_strict_eof": ("tls", "strict_eof"),
    "tls_allow_ccc": ("tls", "allow_ccc"),
    "tls_handshake_timeout": ("tls", "handshake_timeout"),
    "maximum_connections_per_ip": ("limits", "connections_per_ip"),
    "login_failure_delay": ("login", "failure_delay"),
    "maximum_login_attempts": ("login", "failures_per_session"),
    "maximum_login_failures_per_ip": ("login", "failures_per_ip"),
    "login_failure_window": ("login", "failure_window"),
    "atomic_uploads": ("files", "atomic_uploads"),
    "permit_special_mode_bits": ("files", "permit_special_mode_bits"),
    "passive_address_map": ("data_channels", "passive_address_map"),
    "data_peer_check": ("data_channels", "peer_check"),
    "proxy_protocol": ("proxy", "mode"),
    "proxy_protocol_from": ("proxy", "trusted"),
    "proxy_protocol_timeout": ("proxy", "header_timeout"),
    "proxy_protocol_data": ("proxy", "data"),
}


#: Keywords that are refused without others: a PROXY mode needs trusted senders, PROXY
#: headers on data connections need a mode.
NEEDS = {
    "proxy_protocol": ("proxy_protocol_from",),
    "proxy_protocol_data": ("proxy_protocol", "proxy_protocol_from"),
}


def changed_fields(options):
    """The (group, field) pairs where ``options`` differs from the defaults."""
    default = ServerOptions()
    return {
        (group.name, field.name)
        for group in dataclasses.fields(options)
        for field in dataclasses.fields(getattr(options, group.name))
        if getattr(getattr(options, group.name), field.name)
        != getattr(getattr(default, group.name), field.name)
    }


@pytest.mark.parametrize("name", sorted(FIELD_OF))
def test_each_flat_keyword_sets_its_field(name):
    """One flat keyword changes its own field and no other, and the flat attribute of the
    same name reads it back. (The PROXY keywords that mean nothing alone come with the
    ones they need: their fields change too.)"""
    keywords = {other: FLAT[other] for other in (name, *NEEDS.get(name, ()))}
    options = ServerOptions.from_keywords(**keywords)
    group, field = FIELD_OF[name]
    assert changed_fields(options) == {FIELD_OF[other] for other in keywords}
    assert getattr(getattr(options, group), field) == FLAT[name]
    server = Server(**keywords)
    if name == "data_ports":  # the attribute is the pool of free ports
        assert server.data_ports.free == len(FLAT[name])
    else:
        assert getattr(server, name) == FLAT[name]
    assert ServerOptions.from_keywords(**options.keywords()) == options


def test_ssl_is_implicit_tls():
    """ssl= (aioftp's implicit FTPS) sets the TLS context and marks it implicit."""
    options = ServerOptions.from_keywords(ssl=CONTEXT)
    assert changed_fields(options) == {("tls", "context"), ("tls", "implicit")}
    assert options.tls.context is CONTEXT
    assert ServerOptions.from_keywords(**options.keywords()) == options


def test_the_defaults_agree():
    """The flat constructors' defaults and the groups' defaults are one configuration, and
    from_keywords takes exactly Server's option keywords."""
    server_defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(ServerBase.__init__).parameters.items()
        if parameter.kind is parameter.KEYWORD_ONLY
    }
    options_defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(ServerOptions.from_keywords).parameters.items()
    }
    not_options = {
        "path_io_factory",
        "state_store",
        "read_speed_limit",
        "write_speed_limit",
        "read_speed_limit_per_connection",
        "write_speed_limit_per_connection",
    }
    assert set(server_defaults) - not_options == set(options_defaults)
    for name, default in options_defaults.items():
        assert server_defaults[name] == default, name
    assert ServerOptions.from_keywords() == ServerOptions() == Server().options


def test_keywords_round_trip():
    """keywords() gives back the flat keywords: from_keywords(**o.keywords()) == o, and it
    names every option keyword but the passive_address alias."""
    assert ServerOptions.from_keywords(**GROUPED.keywords()) == GROUPED
    assert ServerOptions.from_keywords(**ServerOptions().keywords()) == ServerOptions()
    implicit = dataclasses.replace(GROUPED, tls=TLSOptions(context=CONTEXT, implicit=True))
    assert implicit.keywords()["ssl"] is CONTEXT
    assert implicit.keywords()["tls_context"] is None
    assert ServerOptions.from_keywords(**implicit.keywords()) == implicit
    parameters = set(inspect.signature(ServerOptions.from_keywords).parameters)
    assert set(GROUPED.keywords()) == parameters - {"ipv4_pasv_forced_response_address"}


@pytest.mark.parametrize(
    ("build", "error", "words"),
    [
        (lambda: TLSOptions(context="not a context"), ValueError, "tls_context must be an ssl"),
        (lambda: TLSOptions(implicit=True), ValueError, "ssl must be an ssl.SSLContext"),
        (lambda: TLSOptions(implicit="yes"), ValueError, "implicit must be True or False"),
        (lambda: TLSOptions(data_required=1), ValueError, "tls_data_required"),
        (lambda: TLSOptions(control_required=None), ValueError, "tls_control_required"),
        (lambda: TLSOptions(session_reuse_required=0), ValueError, "tls_require_session_reuse"),
        (lambda: TLSOptions(strict_eof="no"), ValueError, "tls_strict_eof"),
        (lambda: TLSOptions(allow_ccc=1), ValueError, "tls_allow_ccc"),
        (lambda: TLSOptions(handshake_timeout=0), ValueError, "tls_handshake_timeout"),
        (lambda: Timeouts(socket=-1), ValueError, "socket_timeout"),
        (lambda: Timeouts(idle=0), ValueError, "idle_timeout"),
        (lambda: Timeouts(data_connection_wait=-1), ValueError, "wait_future_timeout"),
        (lambda: Timeouts(path_io="x"), ValueError, "path_timeout"),
        (lambda: Timeouts(user_code=float("nan")), ValueError, "callback_timeout"),
        (lambda: Limits(block_size=0), ValueError, "block_size"),
        (lambda: Limits(block_size=None), ValueError, "block_size"),
        (lambda: Limits(connections=0), ValueError, "maximum_connections"),
        (lambda: Limits(connections_per_ip=True), ValueError, "maximum_connections_per_ip"),
        (lambda: LoginPolicy(failure_delay=-1), ValueError, "login_failure_delay"),
        (lambda: LoginPolicy(failures_per_session=0), ValueError, "maximum_login_attempts"),
        (lambda: LoginPolicy(failures_per_ip=-2), ValueError, "maximum_login_failures_per_ip"),
        (lambda: LoginPolicy(failure_window=0), ValueError, "login_failure_window"),
        (lambda: DataChannelOptions(ports=(0,)), ValueError, "data_ports: 0 is not a TCP port"),
        (lambda: DataChannelOptions(ports=(70000,)), ValueError, "data_ports: 70000"),
        (lambda: DataChannelOptions(ports=[2121]), ValueError, "data_ports must be a tuple"),
        (lambda: DataChannelOptions(passive_address="nat..example"), ValueError, "IPv4"),
        (lambda: DataChannelOptions(passive_address=5), ValueError, "a str, trio_ftp.DIALLED"),
        (lambda: DataChannelOptions(active_mode="off"), ValueError, "active_mode"),
        (lambda: DataChannelOptions(permit_foreign_addresses=1), ValueError, "foreign"),
        (lambda: DataChannelOptions(permit_privileged_ports=1), ValueError, "privileged"),
        (lambda: ProtocolOptions(encoding="no-such-codec"), LookupError, "no-such-codec"),
        (lambda: ProtocolOptions(welcome_message=b"hi"), ValueError, "welcome_message"),
        (lambda: ProtocolOptions(system_type=None), ValueError, "system_type"),
        (lambda: FileOptions(atomic_uploads=1), ValueError, "atomic_uploads"),
        (lambda: FileOptions(permit_special_mode_bits="y"), ValueError, "special_mode_bits"),
        (lambda: ServerOptions(tls=None), ValueError, "tls must be a TLSOptions"),
        (lambda: ServerOptions(limits=Timeouts()), ValueError, "limits must be a Limits"),
    ],
)
def test_each_group_checks_its_values(build, error, words):
    """A bad value fails when its group is built, with a message naming the aioftp keyword."""
    with pytest.raises(error, match=words):
        build()


@pytest.mark.parametrize(
    ("flat", "grouped"),
    [
        ({"idle_timeout": 0}, lambda: Timeouts(idle=0)),
        ({"block_size": 0}, lambda: Limits(block_size=0)),
        ({"maximum_login_attempts": -1}, lambda: LoginPolicy(failures_per_session=-1)),
        ({"data_ports": [0]}, lambda: DataChannelOptions(ports=(0,))),
        ({"passive_address": "x..y"}, lambda: DataChannelOptions(passive_address="x..y")),
        ({"ssl": "x"}, lambda: TLSOptions(context="x", implicit=True)),
        ({"tls_context": "x"}, lambda: TLSOptions(context="x")),
        ({"encoding": "no-such-codec"}, lambda: ProtocolOptions(encoding="no-such-codec")),
    ],
)
def test_flat_and_grouped_errors_are_the_same(flat, grouped):
    """Server(**flat) raises what building the group raises: same type, same message."""
    with pytest.raises((ValueError, LookupError)) as from_server:
        Server(**flat)
    with pytest.raises((ValueError, LookupError)) as from_group:
        grouped()
    assert type(from_server.value) is type(from_group.value)
    assert str(from_server.value) == str(from_group.value)


@pytest.mark.parametrize(
    "flat",
    [
        {"ssl": CONTEXT, "tls_context": CONTEXT},
        {"passive_address": "192.0.2.1", "ipv4_pasv_forced_response_address": "192.0.2.2"},
    ],
)
def test_exclusive_flat_keywords(flat):
    """The flat keywords that say one thing twice are refused together, as before."""
    with pytest.raises(ValueError, match="not both"):
        ServerOptions.from_keywords(**flat)
    with pytest.raises(ValueError, match="not both"):
        Server(**flat)


def test_flat_data_ports_are_normalised():
    """data_ports takes any iterable of port-like values (aioftp's), once; duplicates count
    once and the order is kept."""
    ports = (port for port in [50002, "50000", 50002, 50001])
    options = ServerOptions.from_keywords(data_ports=ports)
    assert options.data_channels.ports == (50002, 50000, 50001)
    assert Server(data_ports=range(50000, 50003)).data_ports.free == 3


def test_groups_are_frozen_and_slotted():
    """No field of an options object can be changed or added after construction."""
    options = ServerOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.timeouts.idle = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.tls = TLSOptions()
    for group in (options, *(getattr(options, f.name) for f in dataclasses.fields(options))):
        assert not hasattr(group, "__dict__"), type(group)


def test_replace_checks_again():
    """dataclasses.replace builds a checked copy and leaves the original as it was."""
    timeouts = Timeouts()
    with pytest.raises(ValueError, match="idle_timeout"):
        dataclasses.replace(timeouts, idle=-1)
    shorter = dataclasses.replace(timeouts, idle=5)
    assert (shorter.idle, timeouts.idle) == (5, 300.0)
    with pytest.raises(ValueError, match="ssl must be"):
        dataclasses.replace(TLSOptions(), implicit=True)


def test_flat_attributes_read_the_options():
    """Each aioftp attribute (server.idle_timeout...) reads its option."""
    server = Server(**FLAT)
    for name in vars(FlatOptionAttributes):
        if name.startswith("_"):
            continue
        expected = FLAT.get(name, FLAT["passive_address"])  # the alias names the address
        assert getattr(server, name) == expected, name
    implicit = Server(ssl=CONTEXT, passive_address=choose_address)
    assert (implicit.ssl, implicit.tls_context) == (CONTEXT, None)
    assert implicit.passive_address is choose_address
    assert implicit.ipv4_pasv_forced_response_address is None


def test_flat_attributes_are_read_only():
    """Assigning a flat attribute or the options fails and says where the value lives."""
    server = Server()
    with pytest.raises(AttributeError, match=r"idle_timeout is read-only.*server\.options"):
        server.idle_timeout = 5
    with pytest.raises(AttributeError):
        server.options = ServerOptions()
    assert server.idle_timeout == 300.0
    server.write_speed_limit = 1000  # speed limits stay plain, mutable attributes
    assert server.write_speed_limit == 1000


def test_from_options_runs_the_subclass_constructor():
    """from_options builds an equal configuration through __init__, so a subclass's own
    __init__ runs; users, path IO and speed limits come as arguments."""

    class Counting(Server):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.built_by_subclass = True

    users = [User("u", "p")]
    server = Counting.from_options(
        GROUPED, users, path_io_factory=MemoryPathIO, read_speed_limit=5000
    )
    assert isinstance(server, Counting)
    assert server.built_by_subclass
    assert server.options == GROUPED
    assert server.path_io_factory is MemoryPathIO
    assert server.read_speed_limit == 5000
    assert server.user_manager.users == users


def test_runtime_state_is_apart_from_the_options():
    """Two servers of one configuration share the options and nothing that changes."""
    first, second = Server.from_options(GROUPED), Server.from_options(GROUPED)
    assert first.options == second.options
    assert isinstance(first.runtime, ServerRuntime)
    assert first.runtime is not second.runtime
    assert first.connections is first.runtime.connections
    assert first.connections is not second.connections
    assert first.available_connections.maximum_value == 11
    assert first.data_ports is first.runtime.port_pool
    assert first.data_ports.free == 2
    assert not first.closing


@pytest.mark.parametrize("build", ["flat", "options"])
async def test_sessions_read_the_configuration(nursery, build):
    """A session greets, answers SYST and refuses PORT as configured, whichever
    constructor built the server."""
    keywords = {"welcome_message": "hello there", "system_type": "custom", "active_mode": False}
    users = [User("u", "p")]
    if build == "flat":
        server = Server(users, path_io_factory=MemoryPathIO, **keywords)
    else:
        options = ServerOptions(
            protocol=ProtocolOptions(welcome_message="hello there", system_type="custom"),
            data_channels=DataChannelOptions(active_mode=False),
        )
        server = Server.from_options(options, users, path_io_factory=MemoryPathIO)
    client = await start_memory_session(nursery, server)
    assert await client.reply() == ("220", ["hello there"])
    assert await client.command("SYST") == ("215", ["custom"])
    assert await client.code("USER u") == "331"
    assert await client.code("PASS p") == "230"
    assert await client.code("PORT 127,0,0,1,200,10") == "504"
