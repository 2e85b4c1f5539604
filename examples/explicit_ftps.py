"""Explicit FTPS (RFC 4217): the plain port offers AUTH TLS; logins and data must use TLS.

    python examples/explicit_ftps.py CERT.pem KEY.pem [DIRECTORY]

Without a certificate it makes a throwaway CA with trustme (``pip install trustme``), writes
the CA to ``ca.pem`` in the current directory and prints a curl command that trusts it::

    python examples/explicit_ftps.py
    curl --ssl-reqd --cacert ca.pem ftp://alice:wonderland@127.0.0.1:2121/

``build_server(directory, context)`` makes the server from any server-side
``ssl.SSLContext`` (tests pass one with a trustme certificate).
"""

from __future__ import annotations

import ssl
import sys
from pathlib import Path

import trio

import trio_ftp


def server_context(argv: list[str]) -> ssl.SSLContext:
    """A server-side context from CERT KEY on the command line, or a throwaway CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if len(argv) >= 2:
        context.load_cert_chain(argv[0], argv[1])
        return context
    import trustme  # only for the no-certificate demo

    ca = trustme.CA()
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    ca.cert_pem.write_to_path("ca.pem")
    print("wrote ca.pem: curl --ssl-reqd --cacert ca.pem ftp://alice:wonderland@127.0.0.1:2121/")
    return context


def build_server(directory: Path, context: ssl.SSLContext) -> trio_ftp.Server:
    """Explicit FTPS for ``directory`` (``alice``/``wonderland``); clear text is refused."""
    return trio_ftp.Server(
        [trio_ftp.User("alice", "wonderland", base_path=directory)],
        tls_context=context,
        tls_control_required=True,  # no password ever crosses the network in clear
        tls_data_required=True,  # and no file either
        idle_timeout=300,
        socket_timeout=60,
    )


def main() -> None:
    argv = sys.argv[1:]
    directory = Path(argv[2] if len(argv) >= 3 else ".")
    server = build_server(directory, server_context(argv))
    print(f"explicit FTPS for {directory.resolve()} on 127.0.0.1:2121")
    trio.run(server.run, "127.0.0.1", 2121)


if __name__ == "__main__":
    main()
