"""PROXY protocol and passive-address options: validation at construction, and the command
line (flags, the TOML config's lists) that builds them."""

from __future__ import annotations

import ipaddress

import pytest

from trio_ftp import DIALLED, Server
from trio_ftp.__main__ import build_server, main, parse_args
from trio_ftp.options import DataChannelOptions, ProxyOptions, ServerOptions

NET = ipaddress.ip_network


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: ProxyOptions(mode="on"), "proxy_protocol must be 'off', 'optional' or"),
        (lambda: ProxyOptions(mode="optional"), "needs proxy_protocol_from"),
        (lambda: ProxyOptions(mode="required", trusted=()), "needs proxy_protocol_from"),
        (lambda: ProxyOptions(mode="required", trusted="10.0.0.0/8"), "a list of networks"),
        (lambda: ProxyOptions(trusted=["10.0.0.1/8"]), "host bits set"),
        (lambda: ProxyOptions(trusted=["balancer"]), "'balancer' is not a network"),
        (lambda: ProxyOptions(trusted=[42]), "42 is not a network"),
        (lambda: ProxyOptions(header_timeout=0), "proxy_protocol_timeout"),
        (lambda: ProxyOptions(header_timeout=None), "proxy_protocol_timeout"),
        (lambda: ProxyOptions(data="yes"), "proxy_protocol_data must be True or False"),
        (lambda: ProxyOptions(data=True), "proxy_protocol_data needs proxy_protocol"),
        (lambda: DataChannelOptions(peer_check="loose"), "data_peer_check must be"),
        (lambda: DataChannelOptions(passive_address="dialled"), "give trio_ftp.DIALLED"),
        (lambda: DataChannelOptions(passive_address="-bad-.example"), "or a host name"),
        (lambda: DataChannelOptions(passive_address_map="10.0.0.0/8"), "must map networks"),
        (lambda: DataChannelOptions(passive_address_map={"10/8": "1.2.3.4"}), "not a network"),
        (lambda: DataChannelOptions(passive_address_map={"10.0.0.0/8": "::1"}), "not an IPv4"),
        (lambda: DataChannelOptions(passive_address_map=[("10.0.0.0/8",)]), r"not a \(network"),
        (
            lambda: DataChannelOptions(
                passive_address_map=[("10.0.0.0/8", "1.2.3.4"), (NET("10.0.0.0/8"), "1.2.3.5")]
            ),
            "given twice",
        ),
    ],
)
def test_bad_values_fail_at_construction(build, words):
    """Each bad value is a ValueError naming its keyword."""
    with pytest.raises(ValueError, match=words):
        build()


def test_values_are_normalised():
    """Networks become ip_network objects (strings or objects alike), the map sorted pairs,
    so equal configurations compare equal."""
    proxy = ProxyOptions(mode="optional", trusted=["10.0.0.0/8", NET("::1/128")])
    assert proxy.trusted == (NET("10.0.0.0/8"), NET("::1/128"))
    assert proxy == ProxyOptions(mode="optional", trusted=(NET("10.0.0.0/8"), "::1/128"))
    data = DataChannelOptions(passive_address_map={"10.0.0.0/8": "192.0.2.1", "::/0": "192.0.2.2"})
    assert data.passive_address_map == (
        (NET("10.0.0.0/8"), "192.0.2.1"),
        (NET("::/0"), "192.0.2.2"),
    )


def test_trust_and_the_map_match_addresses():
    """trusts(): membership of the trusted networks (IPv4-mapped IPv6 counts as IPv4);
    mapped_address(): the longest matching prefix, None when no network matches."""
    proxy = ProxyOptions(mode="required", trusted=["10.1.0.0/16"])
    assert proxy.trusts("10.1.2.3")
    assert proxy.trusts("::ffff:10.1.2.3")
    assert not proxy.trusts("10.2.0.1")
    assert not proxy.trusts("not an address")
    data = DataChannelOptions(
        passive_address_map={
            "0.0.0.0/0": "192.0.2.1",
            "10.0.0.0/8": "192.0.2.8",
            "10.9.0.0/16": "192.0.2.16",
        }
    )
    assert data.mapped_address("10.9.1.1") == "192.0.2.16"
    assert data.mapped_address("10.8.1.1") == "192.0.2.8"
    assert data.mapped_address("203.0.113.1") == "192.0.2.1"
    assert (
        DataChannelOptions(passive_address_map={"10.0.0.0/8": "192.0.2.8"}).mapped_address("::1")
        is None
    )


def test_passive_address_kinds_are_accepted():
    """An IPv4 address, a host name, DIALLED and a callable are all passive addresses."""
    for address in ("192.0.2.1", "ftp.example.com", "localhost", DIALLED, lambda c: None):
        assert Server(passive_address=address).passive_address is address


def test_defaults_are_off_and_strict():
    options = ServerOptions()
    assert (options.proxy.mode, options.proxy.header_timeout, options.proxy.data) == (
        "off",
        3.0,
        False,
    )
    assert options.data_channels.peer_check == "strict"


# the command line ---------------------------------------------------------------------------
def test_command_line_builds_the_proxy_options(tmp_path):
    args = parse_args(
        [
            str(tmp_path),
            "--proxy-protocol", "required",
            "--proxy-from", "10.0.0.0/8",
            "--proxy-from", "192.0.2.7",
            "--proxy-timeout", "1.5",
            "--proxy-protocol-data",
            "--data-peer-check", "transport",
            "--passive-address", "dialled",
            "--passive-address-map", "10.0.0.0/8=192.0.2.8",
            "--passive-address-map", "0.0.0.0/0=192.0.2.1",
        ]
    )  # fmt: skip
    options = build_server(args).options
    assert options.proxy == ProxyOptions(
        mode="required", trusted=["10.0.0.0/8", "192.0.2.7/32"], header_timeout=1.5, data=True
    )
    assert options.data_channels.peer_check == "transport"
    assert options.data_channels.passive_address is DIALLED
    assert options.data_channels.mapped_address("10.1.1.1") == "192.0.2.8"
    assert options.data_channels.mapped_address("127.0.0.1") == "192.0.2.1"


def test_passive_address_on_the_command_line(tmp_path):
    def passive(text):
        return build_server(parse_args([str(tmp_path), "--passive-address", text])).passive_address

    assert passive("192.0.2.1") == "192.0.2.1"
    assert passive("ftp.example.com") == "ftp.example.com"
    assert passive("dialled") is DIALLED


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--proxy-protocol", "maybe"], "invalid choice: 'maybe'"),
        (["--proxy-from", "10.0.0.1/8"], "not a network (CIDR): '10.0.0.1/8'"),
        (["--data-peer-check", "loose"], "invalid choice: 'loose'"),
        (["--passive-address", "10.0.0.256"], "an IPv4 address, a host name or 'dialled'"),
        (["--passive-address-map", "10.0.0.0/8"], "expected CIDR=ADDRESS"),
        (["--passive-address-map", "10.0.0.0/8=ftp.example"], "not an IPv4 address"),
        (["--proxy-timeout", "0"], "must be a positive number"),
    ],
)
def test_bad_command_line_values_exit_2(tmp_path, capsys, argv, words):
    with pytest.raises(SystemExit) as exit:
        parse_args([str(tmp_path), *argv])
    assert exit.value.code == 2
    assert words in capsys.readouterr().err


def test_proxy_mode_without_trusted_networks_exits_2(tmp_path, capsys):
    assert main([str(tmp_path), "--proxy-protocol", "optional", "--port", "0"]) == 2
    assert "needs proxy_protocol_from" in capsys.readouterr().err


def test_config_file_takes_lists_for_repeatable_options(tmp_path):
    """In --config, a repeatable option takes a list (or one value); each item is checked
    like the command line's; --proxy-from on the command line adds to the file's."""
    config = tmp_path / "c.toml"
    config.write_text(
        f"root = '{tmp_path}'\nproxy-protocol = 'optional'\n"
        "proxy-from = ['10.0.0.0/8', '192.0.2.0/24']\n"
        "passive-address-map = '10.0.0.0/8=192.0.2.8'\n"
        "passive-address = 'dialled'\ndata-peer-check = 'off'\nproxy-protocol-data = true\n"
    )
    args = parse_args(["--config", str(config), "--proxy-from", "127.0.0.1"])
    options = build_server(args).options
    assert options.proxy.trusted == (NET("10.0.0.0/8"), NET("192.0.2.0/24"), NET("127.0.0.1/32"))
    assert options.proxy.mode == "optional"
    assert options.proxy.data is True
    assert options.data_channels.passive_address is DIALLED
    assert options.data_channels.peer_check == "off"
    assert options.data_channels.mapped_address("10.0.0.1") == "192.0.2.8"


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("proxy-from = ['10.0.0.0/8', 'nonsense']", "proxy-from: not a network"),
        ("proxy-from = [['10.0.0.0/8']]", "must be a string or a number"),
        ("proxy-protocol = 'sometimes'", "proxy-protocol must be one of off, optional, required"),
    ],
)
def test_bad_config_values_exit_2(tmp_path, capsys, line, words):
    config = tmp_path / "c.toml"
    config.write_text(f"root = '{tmp_path}'\n{line}\n")
    with pytest.raises(SystemExit) as exit:
        parse_args(["--config", str(config)])
    assert exit.value.code == 2
    assert words in capsys.readouterr().err
