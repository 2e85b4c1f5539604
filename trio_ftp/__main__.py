"""``python -m trio_ftp``: serve a directory over FTP, anonymous read-only by default.

The only place in trio_ftp that configures logging.
"""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from .server import Server
from .users import Permission, User

__all__ = ["build_server", "main", "parse_args"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, parsed."""
    parser = argparse.ArgumentParser(
        prog="python -m trio_ftp",
        description="Serve a directory over FTP (anonymous, read-only unless told otherwise).",
    )
    parser.add_argument("directory", nargs="?", default=".", help="directory to serve (default: .)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=2121, help="port to listen on (default: 2121)")
    parser.add_argument(
        "--writable", action="store_true", help="let clients upload and change files"
    )
    parser.add_argument("--user", help="require this login instead of anonymous access")
    parser.add_argument("--password", help="the password for --user")
    parser.add_argument("--data-ports", help="passive port range, e.g. 50000-50100")
    parser.add_argument("--tls-cert", help="PEM certificate (chain): enables FTPS")
    parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
    parser.add_argument(
        "--tls-implicit", action="store_true", help="implicit FTPS (TLS from the first byte)"
    )
    parser.add_argument(
        "--tls-required",
        action="store_true",
        help="explicit FTPS only: refuse logins and transfers that are not TLS",
    )
    parser.add_argument("--idle-timeout", type=float, default=300.0, help="seconds (default: 300)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command")
    args = parser.parse_args(argv)
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")
    if (args.tls_implicit or args.tls_required or args.tls_key) and not args.tls_cert:
        parser.error("the --tls-* options need --tls-cert")
    if not Path(args.directory).is_dir():
        parser.error(f"{args.directory!r} is not a directory")
    args.directory = str(Path(args.directory).resolve())
    return args


def _port_range(text: str) -> range:
    low, _, high = text.partition("-")
    return range(int(low), int(high or low) + 1)


def build_server(args: argparse.Namespace) -> Server:
    """The server the command line describes."""
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    permission = Permission("/", readable=True, writable=args.writable)
    user = User(args.user, args.password, base_path=Path(args.directory), permissions=[permission])
    return Server(
        [user],
        idle_timeout=args.idle_timeout,
        socket_timeout=60,
        data_ports=_port_range(args.data_ports) if args.data_ports else None,
        ssl=context if args.tls_implicit else None,
        tls_context=None if args.tls_implicit else context,
        tls_control_required=args.tls_required,
        tls_data_required=args.tls_required,
    )


async def _serve(server: Server, args: argparse.Namespace) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(server.serve, args.host, args.port)
            shown = f"[{host}]" if ":" in host else host
            who = f"user {args.user!r}" if args.user else "anonymous"
            mode = "read/write" if args.writable else "read-only"
            print(
                f"Serving {args.directory} at ftp://{shown}:{port}/ "
                f"({who}, {mode}). Press Ctrl-C to stop.",
                flush=True,
            )
            async for signum in signals:
                logging.getLogger("trio_ftp").info("%s: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m trio_ftp`` and ``trio-ftp``."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    trio.run(_serve, build_server(args), args)
    print("stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
