"""``python -m trio_ftp`` / ``trio-ftp``: serve a directory over FTP or FTPS.

Anonymous read-only by default; ``--user NAME:PASSWORD`` adds read/write accounts; a TOML
``--config`` file holds the same options plus ``[[users]]`` with scrypt password hashes
(``python -m trio_ftp hash-password`` makes one). SIGINT/SIGTERM shut down gracefully.

The only place in trio_ftp that configures logging.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import ipaddress
import json
import logging
import math
import os
import ssl
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import trio

from . import __version__
from .cliworker import worker_server
from .config import ConfigError, HashedUserManager, hash_password, load_toml, users_from_config
from .graceful import serve_until_signal
from .logsetup import LOG_FORMATS, configure_logging
from .opsendpoint import OpsEndpoint
from .options import (
    DIALLED,
    DataChannelOptions,
    DialledAddress,
    FileOptions,
    Limits,
    LoginPolicy,
    ProxyOptions,
    ServerOptions,
    Timeouts,
    TLSOptions,
    is_host_name,
)
from .pathio import AbstractPathIO, FsspecPathIO, PathIO, is_storage_url
from .pathio._fsspec import redacted
from .reuseport import ReusePortUnavailable
from .server import Server
from .stores import open_store
from .users import MemoryUserManager, Permission, User
from .workers import serve_workers

T = TypeVar("T")

__all__ = ["build_server", "hash_password_command", "main", "make_parser", "parse_args"]

PROG = "trio-ftp"
logger = logging.getLogger("trio_ftp")


def _checked(
    convert: Callable[[str], T], accept: Callable[[T], bool], kind: str, rule: str
) -> Callable[[str], T]:
    """An argparse ``type`` that converts, then checks, with a one-line message for each."""

    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {kind}: {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{rule}: {text!r}")
        return value

    return parse


_positive_int = _checked(int, lambda v: v > 0, "an integer", "must be positive")
_positive_float = _checked(
    float, lambda v: 0 < v < math.inf, "a number", "must be a positive number"
)
_non_negative_float = _checked(
    float, lambda v: 0 <= v < math.inf, "a number", "must be zero or more"
)
_port = _checked(int, lambda v: 0 <= v <= 65535, "a port number", "port out of range")


def port_range(text: str) -> range:
    """``"50000-50100"`` (inclusive) or ``"50000"`` as a ``range``."""
    low_text, _, high_text = text.partition("-")
    try:
        low, high = int(low_text), int(high_text or low_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH, got {text!r}") from None
    if not 1 <= low <= high <= 65535:
        raise argparse.ArgumentTypeError(f"expected 1 <= LOW <= HIGH <= 65535, got {text!r}")
    return range(low, high + 1)


def _workers(text: str) -> int:
    """``N`` (positive) or ``auto``: the number of CPUs."""
    if text == "auto":
        return os.cpu_count() or 1
    return _positive_int(text)


def _json_object(text: str) -> dict[str, Any]:
    """``--storage-options``: a JSON object (the file system's keywords)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, like '{\"endpoint_url\": ...}'")
    return value


def _host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError("expected HOST:PORT, like 127.0.0.1:9100")
    return host.strip("[]"), _port(port)


def _passive_address(text: str) -> str | DialledAddress:
    """``--passive-address``: an IPv4 address, a host name, or ``dialled``."""
    if text == DIALLED.value:
        return DIALLED
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        pass
    if is_host_name(text):
        return text
    raise argparse.ArgumentTypeError(
        f"expected an IPv4 address, a host name or 'dialled': {text!r}"
    )


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR network (``10.0.0.0/8``; a bare address is a /32 or /128)."""
    try:
        return ipaddress.ip_network(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a network (CIDR): {text!r}: {exc}") from None


def _address_override(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]:
    """``--passive-address-map CIDR=ADDRESS``."""
    network, equals, address = text.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"expected CIDR=ADDRESS, got {text!r}")
    try:
        return _network(network), str(ipaddress.IPv4Address(address))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv4 address: {address!r}") from None


def _user(text: str) -> tuple[str, str]:
    login, colon, password = text.partition(":")
    if not login or not colon:
        raise argparse.ArgumentTypeError(f"expected NAME:PASSWORD, got {login or text!r}:...")
    if not password:
        raise argparse.ArgumentTypeError(f"empty password for {login!r}")
    return login, password


def _user_lines(path: str) -> list[tuple[str, str]]:
    """``--user-file``: one ``NAME:PASSWORD`` per line (``#`` comments and blank lines
    skipped), so that passwords stay out of ``ps``."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path!r}: {exc.strerror}") from None
    users = []
    for number, line in enumerate(lines, start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                users.append(_user(line))
            except argparse.ArgumentTypeError as exc:
                raise argparse.ArgumentTypeError(f"{path}:{number}: {exc}") from None
    return users


def _log_level(text: str) -> str:
    return text.upper()


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def make_parser() -> argparse.ArgumentParser:
    """The argument parser (without config-file defaults)."""
    parser = _Parser(
        prog=PROG,
        description=(
            "Serve a directory over FTP/FTPS (anonymous read-only unless told otherwise). "
            f"'{PROG} hash-password' prints a password hash for a --config [[users]] table."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add(
        "directory",
        nargs="?",
        default=None,
        help="directory or storage URL to serve (same as --root)",
    )
    add("--version", action="version", version=f"trio_ftp {__version__}")
    add("--config", metavar="FILE", default=None, help="TOML file with these options and [[users]]")
    add(
        "--root",
        default=".",
        help="directory to serve, or a storage URL: s3://bucket/prefix (pip install "
        "'trio_ftp[s3]'; credentials from AWS_* variables or profiles), any fsspec URL",
    )
    add(
        "--storage-options",
        type=_json_object,
        default=None,
        metavar="JSON",
        help="keywords for a storage URL's file system, as a JSON object "
        '(e.g. \'{"endpoint_url": "http://127.0.0.1:9000"}\'); never printed',
    )
    add("--host", default="127.0.0.1", help="address to listen on")
    add("--port", type=_port, default=2121, help="port to listen on (0: any free port)")
    add(
        "--workers",
        type=_workers,
        default=1,
        metavar="N|auto",
        help="processes sharing the port through SO_REUSEPORT (auto: one per CPU); "
        "--data-ports is split between them",
    )
    add(
        "--user",
        action="append",
        type=_user,
        default=[],
        metavar="NAME:PASSWORD",
        help="a read/write account (repeatable)",
    )
    add(
        "--user-file",
        type=_user_lines,
        default=[],
        metavar="FILE",
        help="read/write accounts, one NAME:PASSWORD per line (keeps passwords out of ps)",
    )
    anonymous = parser.add_mutually_exclusive_group()
    anonymous.add_argument(
        "--anonymous-writable",
        "--writable",
        action="store_true",
        help="let anonymous clients upload and change files",
    )
    anonymous.add_argument("--no-anonymous", action="store_true", help="no anonymous access")
    tls = parser.add_argument_group("TLS (FTPS)")
    tls.add_argument("--tls-cert", metavar="PEM", default=None, help="certificate chain: FTPS")
    tls.add_argument("--tls-key", metavar="PEM", default=None, help="private key for --tls-cert")
    tls.add_argument(
        "--tls-self-signed",
        action="store_true",
        help="development only: a throwaway certificate made with trustme",
    )
    tls.add_argument(
        "--tls-ca-out",
        metavar="PEM",
        default="./trio-ftp-ca.pem",
        help="where --tls-self-signed writes the CA certificate clients should trust",
    )
    tls.add_argument(
        "--implicit-tls",
        "--tls-implicit",
        action="store_true",
        help="implicit FTPS (TLS from the first byte) instead of AUTH TLS",
    )
    tls.add_argument(
        "--tls-required",
        action="store_true",
        help="explicit FTPS only: refuse logins and transfers that are not TLS",
    )
    net = parser.add_argument_group("data connections")
    net.add_argument(
        "--data-ports", type=port_range, default=None, metavar="LOW-HIGH", help="passive ports"
    )
    net.add_argument(
        "--passive-address",
        type=_passive_address,
        default=None,
        help="address announced in PASV replies (NAT): an IPv4 address, a host name "
        "(resolved at each PASV) or 'dialled' (the address the client dialled)",
    )
    net.add_argument(
        "--no-active",
        action="store_true",
        help="refuse PORT/EPRT (active mode: the server connects to the client) with 504",
    )
    add(
        "--atomic-uploads",
        action="store_true",
        help="STOR/STOU write a hidden temporary file, renamed over the target only when "
        "the upload is whole (a failed upload leaves the old file)",
    )
    proxy = parser.add_argument_group("PROXY protocol / load balancer")
    proxy.add_argument(
        "--proxy-protocol",
        choices=["off", "optional", "required"],
        default="off",
        help="PROXY protocol (v1/v2) headers from load balancers on the control port",
    )
    proxy.add_argument(
        "--proxy-from",
        action="append",
        type=_network,
        default=[],
        metavar="CIDR",
        help="a network whose connections may send PROXY headers (repeatable)",
    )
    proxy.add_argument(
        "--proxy-timeout",
        type=_positive_float,
        default=3.0,
        metavar="SECONDS",
        help="time a trusted sender has to send its PROXY header",
    )
    proxy.add_argument(
        "--proxy-protocol-data",
        action="store_true",
        help="passive data connections from trusted senders start with a PROXY header too",
    )
    proxy.add_argument(
        "--data-peer-check",
        choices=["strict", "transport", "off"],
        default="strict",
        help="who may connect to a passive port: the client (strict), the control "
        "connection's peer, e.g. the balancer (transport), anyone (off: insecure)",
    )
    proxy.add_argument(
        "--passive-address-map",
        action="append",
        type=_address_override,
        default=[],
        metavar="CIDR=ADDRESS",
        help="announce ADDRESS in PASV replies to clients in CIDR (repeatable; the "
        "longest prefix wins; others get --passive-address)",
    )
    limits = parser.add_argument_group("limits")
    for name, what in [
        ("--max-download-rate", "bytes/s of all downloads together"),
        ("--max-upload-rate", "bytes/s of all uploads together"),
        ("--max-download-rate-per-connection", "bytes/s of each session's downloads"),
        ("--max-upload-rate-per-connection", "bytes/s of each session's uploads"),
    ]:
        limits.add_argument(name, type=_positive_float, default=None, metavar="BYTES", help=what)
    limits.add_argument(
        "--max-connections",
        type=_positive_int,
        default=None,
        metavar="N",
        help="control connections at once; the next gets 421",
    )
    limits.add_argument(
        "--max-connections-per-ip",
        type=_positive_int,
        default=None,
        metavar="N",
        help="control connections from one address at once",
    )
    limits.add_argument(
        "--state-store",
        default=None,
        metavar="URL",
        help="count the connection limits and login-failure bans in a shared store: "
        "redis://HOST:PORT/DB (every instance) or sqlite:///PATH (the processes of this "
        "machine); default: this process alone",
    )
    limits.add_argument(
        "--login-failure-delay",
        type=_non_negative_float,
        default=1.0,
        metavar="SECONDS",
        help="answer a failed PASS only after this long",
    )
    limits.add_argument(
        "--max-login-attempts",
        type=_positive_int,
        default=3,
        metavar="N",
        help="failed logins after which a session is closed",
    )
    limits.add_argument(
        "--ban-after",
        type=_positive_int,
        default=20,
        metavar="N",
        help="failed logins from one address (across sessions) after which it is refused",
    )
    limits.add_argument(
        "--ban-window",
        type=_non_negative_float,
        default=600.0,
        metavar="SECONDS",
        help="how long a failed login counts against its address",
    )
    limits.add_argument(
        "--idle-timeout",
        type=_non_negative_float,
        default=300.0,
        metavar="SECONDS",
        help="close idle sessions after this long (0: never)",
    )
    limits.add_argument(
        "--grace",
        type=_non_negative_float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, let running transfers finish for this long",
    )
    add(
        "--log-level",
        type=_log_level,
        choices=["DEBUG", "INFO", "WARNING"],
        default="INFO",
        help="logging threshold",
    )
    add("-v", "--verbose", action="store_true", help="same as --log-level DEBUG")
    add("--log-file", metavar="FILE", default=None, help="append the log to FILE (default: stderr)")
    add(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text lines, or JSON lines with an 'event' field (login_failed, transfer_finished...)",
    )
    add(
        "--metrics-address",
        type=_host_port,
        default=None,
        metavar="HOST:PORT",
        help="serve /metrics (Prometheus), /health, /ready and /sessions over HTTP there "
        "(pip install 'trio_ftp[metrics]'; no authentication: keep it private); with "
        "--workers, worker N uses PORT+N",
    )
    add(
        "--xferlog",
        metavar="FILE",
        default=None,
        help="append every transfer's end to FILE in the xferlog format (wu-ftpd, ProFTPD, vsftpd)",
    )
    return parser


#: Option destinations a config file may not set.
_NOT_IN_CONFIG = {"help", "config", "directory", "user"}


#: Options naming files: a relative one in a config file is relative to that file's folder.
_PATH_OPTIONS = frozenset(
    {"root", "tls_cert", "tls_key", "tls_ca_out", "log_file", "xferlog", "user_file"}
)


def _config_defaults(
    parser: argparse.ArgumentParser, data: dict[str, Any], folder: Path | None = None
) -> dict[str, Any]:
    """The config file's options, checked and converted like the command line's; a
    relative path in it is taken from ``folder`` (the config file's), as ``[[users]]
    root`` is."""
    actions = {a.dest: a for a in parser._actions if a.dest not in _NOT_IN_CONFIG}
    defaults: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        if (
            folder is not None
            and key in _PATH_OPTIONS
            and isinstance(value, str)
            and not is_storage_url(value)
        ):
            path = Path(value).expanduser()
            value = str(path if path.is_absolute() else folder / path)
        if raw_key == "users":
            continue
        key = raw_key.replace("-", "_")
        action = actions.get(key)
        if action is None:
            raise ConfigError(f"unknown key {raw_key!r}")
        if action.nargs == 0:  # a flag
            if not isinstance(value, bool):
                raise ConfigError(f"{raw_key} must be true or false, got {value!r}")
            defaults[key] = value
            continue
        if isinstance(action, argparse._AppendAction):  # repeatable: a list, or one value
            values = value if isinstance(value, list) else [value]
            defaults[key] = [_config_value(action, raw_key, item) for item in values]
            continue
        if key == "storage_options":  # a TOML table
            if not isinstance(value, dict):
                raise ConfigError("storage_options must be a table ({ key = value, ... })")
            defaults[key] = value
            continue
        if key == "data_ports" and isinstance(value, list) and len(value) == 2:
            value = f"{value[0]}-{value[1]}"
        defaults[key] = _config_value(action, raw_key, value)
    return defaults


def _config_value(action: argparse.Action, raw_key: str, value: object) -> Any:
    """One config value, converted and checked by ``action`` as the command line's."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{raw_key} must be a string or a number, got {value!r}")
    convert = action.type if callable(action.type) else str
    try:
        converted = convert(str(value))
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise ConfigError(f"{raw_key}: {exc}") from None
    if action.choices is not None and converted not in action.choices:
        raise ConfigError(f"{raw_key} must be one of {', '.join(map(str, action.choices))}")
    return converted


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (and the ``--config`` file it names), parsed and checked.

    Errors end the program with a one-line message and exit status 2. Command-line options
    win over the config file. ``args.root`` is the resolved directory; ``args.config_users``
    the config file's users.
    """
    parser = make_parser()
    args = parser.parse_args(argv)
    args.config_users = []
    if args.config is not None:
        config_path = Path(args.config)
        try:
            data = load_toml(config_path)
            parser.set_defaults(**_config_defaults(parser, data, config_path.resolve().parent))
        except ConfigError as exc:
            parser.error(f"--config: {exc}")
        args = parser.parse_args(argv)
    if args.directory is not None:
        args.root = args.directory
    if is_storage_url(str(args.root)):
        args.root = str(args.root)  # the backend checks it (build_server)
    else:
        if args.storage_options is not None:
            parser.error("--storage-options needs --root to be a storage URL (s3://...)")
        root = Path(args.root).expanduser()
        if not root.is_dir():
            parser.error(f"{args.root!r} is not a directory")
        args.root = root.resolve()
    args.directory = str(args.root)
    if args.config is not None:
        try:
            args.config_users = users_from_config(
                data.get("users", []),
                default_root=args.root,
                relative_to=config_path.resolve().parent,
            )
        except ConfigError as exc:
            parser.error(f"--config: {exc}")
    if args.verbose:
        args.log_level = "DEBUG"
    logins = [login for login, _ in [*args.user, *args.user_file]]
    logins += [u.login for u in args.config_users]
    duplicates = sorted({login for login in logins if logins.count(login) > 1 and login})
    if duplicates:
        parser.error(f"user(s) defined twice: {', '.join(duplicates)}")
    if args.no_anonymous and not logins:
        parser.error("--no-anonymous needs --user or [[users]] in --config")
    if args.tls_self_signed and (args.tls_cert or args.tls_key):
        parser.error("--tls-self-signed and --tls-cert/--tls-key exclude each other")
    if args.tls_key and not args.tls_cert:
        parser.error("--tls-key needs --tls-cert")
    has_tls = bool(args.tls_cert or args.tls_self_signed)
    if (args.implicit_tls or args.tls_required) and not has_tls:
        parser.error("--implicit-tls/--tls-required need --tls-cert or --tls-self-signed")
    if args.implicit_tls and args.tls_required:
        parser.error("--tls-required is for explicit FTPS; implicit FTPS is always TLS")
    return args


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server's TLS context, or ``None``. ``ConfigError`` (one line) on bad files."""
    if args.tls_self_signed:
        try:
            import trustme
        except ImportError:
            raise ConfigError(
                "--tls-self-signed needs the 'trustme' package: pip install 'trio_ftp[testing]'"
            ) from None
        ca = trustme.CA()
        names = ["localhost", "127.0.0.1", "::1"]
        for extra in (args.host, args.passive_address):
            if isinstance(extra, str) and extra not in names and extra not in ("0.0.0.0", "::"):
                names.append(extra)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*names).configure_cert(context)
        try:
            ca.cert_pem.write_to_path(str(args.tls_ca_out))
        except OSError as exc:
            raise ConfigError(f"--tls-ca-out {args.tls_ca_out!r}: {exc.strerror or exc}") from None
        logger.warning(
            "self-signed TLS for development; clients must trust the CA in %s", args.tls_ca_out
        )
        return context
    if not args.tls_cert:
        return None
    for path in (args.tls_cert, args.tls_key):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"TLS file not found: {path!r}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(_tls_problem(args.tls_cert, args.tls_key, exc)) from None
    return context


def _tls_problem(cert: str, key: str | None, exc: Exception) -> str:
    """One line naming the file at fault and why (OpenSSL says only "PEM lib")."""
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError):
        return f"cannot read the TLS files: {exc.strerror or exc}"
    try:
        cert_text = Path(cert).read_text(errors="replace")
        key_text = cert_text if key is None else Path(key).read_text(errors="replace")
    except OSError as error:
        return f"cannot read the TLS files: {error.strerror or error}"
    if "-----BEGIN CERTIFICATE-----" not in cert_text:
        return f"--tls-cert {cert!r}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)"
    if "PRIVATE KEY-----" not in key_text:
        where = f"--tls-key {key!r}" if key else f"--tls-cert {cert!r} (no --tls-key)"
        return f"{where}: no PEM private key in it"
    reason = getattr(exc, "reason", None) or str(exc)
    if "MISMATCH" in str(reason).upper():
        return f"--tls-key {key!r} is not the key of the certificate in --tls-cert {cert!r}"
    return f"--tls-cert {cert!r} / --tls-key {key!r}: {reason}"


def build_server(args: argparse.Namespace) -> Server:
    """The server ``args`` (from :func:`parse_args`) describes; ``ConfigError`` if it can't."""
    context = _tls_context(args)
    path_io_factory: type[AbstractPathIO[Any]] = PathIO
    if isinstance(args.root, str) and is_storage_url(args.root):
        try:
            path_io_factory = FsspecPathIO.for_root(args.root, args.storage_options)
        except (ValueError, ImportError) as exc:
            raise ConfigError(f"--root {redacted(args.root)}: {exc}") from None
        root = Path(".")  # the root URL itself
    else:
        root = Path(args.root)
    users: list[User] = []
    if not args.no_anonymous:
        anonymous_permission = Permission("/", readable=True, writable=args.anonymous_writable)
        users.append(User(None, None, base_path=root, permissions=[anonymous_permission]))
    for login, password in [*args.user, *args.user_file]:
        users.append(
            User(
                login,
                hash_password(password),
                base_path=root,
                permissions=[Permission("/", readable=True, writable=True)],
            )
        )
    args.cli_users = list(users)  # what a reload keeps (SIGHUP re-reads the config's)
    users.extend(args.config_users)
    try:
        options = ServerOptions(
            timeouts=Timeouts(idle=args.idle_timeout or None, socket=60),
            limits=Limits(
                connections=args.max_connections,
                connections_per_ip=args.max_connections_per_ip,
            ),
            login=LoginPolicy(
                failure_delay=args.login_failure_delay,
                failures_per_session=args.max_login_attempts,
                failures_per_ip=args.ban_after,
                failure_window=args.ban_window,
            ),
            files=FileOptions(atomic_uploads=args.atomic_uploads),
            data_channels=DataChannelOptions(
                active_mode=not args.no_active,
                ports=None if args.data_ports is None else tuple(args.data_ports),
                passive_address=args.passive_address,
                passive_address_map=tuple(args.passive_address_map),
                peer_check=args.data_peer_check,
            ),
            proxy=ProxyOptions(
                mode=args.proxy_protocol,
                trusted=tuple(args.proxy_from),
                header_timeout=args.proxy_timeout,
                data=args.proxy_protocol_data,
            ),
            tls=TLSOptions(
                context=context,
                implicit=args.implicit_tls,
                control_required=args.tls_required,
                data_required=args.tls_required,
            ),
        )
        return Server.from_options(
            options,
            HashedUserManager(users),
            path_io_factory=path_io_factory,
            state_store=None if args.state_store is None else open_store(args.state_store),
            write_speed_limit=args.max_download_rate,
            read_speed_limit=args.max_upload_rate,
            write_speed_limit_per_connection=args.max_download_rate_per_connection,
            read_speed_limit_per_connection=args.max_upload_rate_per_connection,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def attach_transfer_log(server: Server, args: argparse.Namespace) -> None:
    """Open ``--xferlog`` (appended, a line at a time) as the server's transfer log."""
    if args.xferlog is None:
        return
    try:
        server.runtime.audit.xferlog = open(args.xferlog, "a", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise ConfigError(f"--xferlog {args.xferlog!r}: {exc.strerror or exc}") from None


def _describe(args: argparse.Namespace) -> str:
    named = [login for login, _ in [*args.user, *args.user_file]]
    named += [u.login for u in args.config_users]
    parts = [f"users {', '.join(map(repr, named))}"] if named else []
    if not args.no_anonymous:
        parts.append("anonymous " + ("read/write" if args.anonymous_writable else "read-only"))
    return "; ".join(parts)


def _announce(args: argparse.Namespace, address: tuple[str, int]) -> None:
    """The line that says where the server listens (tests and scripts read the port in it)."""
    host, port = address
    shown = f"[{host}]" if ":" in host else host
    scheme = "ftps" if args.implicit_tls else "ftp"
    workers = f" with {args.workers} workers" if args.workers > 1 else ""
    print(
        f"Serving {redacted(str(args.root))} at {scheme}://{shown}:{port}/{workers} "
        f"({_describe(args)}). Press Ctrl-C to stop.",
        flush=True,
    )


def _reloaded_users(args: argparse.Namespace) -> list[User]:
    """The users after a reload: the command line's, and the config file's read again.
    Blocking (reads the file): run it in a thread. ``ConfigError`` when the file is bad."""
    config_users: list[User] = []
    if args.config is not None:
        path = Path(args.config)
        config_users = users_from_config(
            load_toml(path).get("users", []),
            default_root=args.root,
            relative_to=path.resolve().parent,
        )
    return [*args.cli_users, *config_users]


async def reload_config(server: Server, args: argparse.Namespace) -> None:
    """SIGHUP: read the TLS certificate and key again (new handshakes use them) and the
    config file's ``[[users]]`` (new logins use them), without touching the sessions
    running. A bad file is logged at ERROR and the running configuration stays."""
    try:
        users = await trio.to_thread.run_sync(_reloaded_users, args)
        context = server.options.tls.context
        if context is not None and args.tls_cert:
            context.load_cert_chain(args.tls_cert, args.tls_key)
    except (ConfigError, OSError, ssl.SSLError) as exc:
        logger.error("SIGHUP: reload failed, the running configuration stays: %s", exc)
        return
    manager = server.user_manager
    if isinstance(manager, MemoryUserManager):
        manager.replace_users(users)
    logger.info(
        "SIGHUP: reloaded %d user(s)%s",
        len(users),
        " and the TLS certificate" if args.tls_cert else "",
    )


async def _serve(server: Server, args: argparse.Namespace) -> None:
    endpoints: list[OpsEndpoint] = []

    def serving(address: tuple[str, int]) -> None:
        if args.metrics_address is not None:
            endpoint = OpsEndpoint(server, *args.metrics_address)
            endpoint.start()
            endpoints.append(endpoint)
            logger.info("metrics and health on http://%s:%d/", *endpoint.address)
        _announce(args, address)

    try:
        await serve_until_signal(
            server,
            args.host,
            args.port,
            grace=args.grace,
            on_serving=serving,
            reload=functools.partial(reload_config, server, args),
        )
    finally:
        for endpoint in endpoints:
            endpoint.stop()


def _serve_workers(args: argparse.Namespace) -> int:
    """``--workers N`` with N > 1: a supervisor and N worker processes."""
    if args.tls_self_signed:
        print(
            f"{PROG}: error: --tls-self-signed would make one certificate per worker; "
            "with --workers give --tls-cert/--tls-key",
            file=sys.stderr,
        )
        return 2
    try:
        build_server(args)  # the configuration's errors once, here, rather than N times
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        status = serve_workers(
            functools.partial(worker_server, args),
            args.host,
            args.port,
            workers=args.workers,
            grace=args.grace,
            data_ports=args.data_ports,
            on_ready=functools.partial(_announce, args),
        )
    except ReusePortUnavailable as exc:
        print(
            f"{PROG}: error: --workers {args.workers} needs SO_REUSEPORT, "
            f"which this system does not offer ({exc})",
            file=sys.stderr,
        )
        return 2
    except ValueError as exc:
        print(f"{PROG}: error: --workers {args.workers}: {exc}", file=sys.stderr)
        return 2
    print("stopped", file=sys.stderr)
    return status


def _read_password() -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise ConfigError("the passwords differ")
    return first


def hash_password_command(argv: Sequence[str]) -> int:
    """``trio-ftp hash-password``: print the scrypt hash of a password read from stdin."""
    parser = _Parser(
        prog=f"{PROG} hash-password",
        description="Print the hash of a password (read from stdin, or prompted for) "
        "for the password_hash key of a --config [[users]] table.",
    )
    parser.parse_args(argv)
    try:
        password = _read_password()
    except ConfigError as exc:
        parser.error(str(exc))
    except (EOFError, KeyboardInterrupt):
        print(file=sys.stderr)
        return 1
    if not password:
        parser.error("empty password")
    print(hash_password(password))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m trio_ftp`` and ``trio-ftp``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["hash-password"]:
        return hash_password_command(argv[1:])
    args = parse_args(argv)
    try:
        configure_logging(args.log_level, args.log_format, args.log_file)
    except OSError as exc:
        print(f"{PROG}: error: --log-file {args.log_file!r}: {exc.strerror}", file=sys.stderr)
        return 2
    if args.workers > 1:
        return _serve_workers(args)
    try:
        server = build_server(args)
        attach_transfer_log(server, args)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        trio.run(_serve, server, args)
    except OSError as exc:
        print(f"{PROG}: error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    print("stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
