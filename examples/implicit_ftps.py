"""Implicit FTPS: every connection is TLS from its first byte (traditionally port 990).

``Server(..., ssl=context)`` is aioftp's meaning of ``ssl=``: the control connection is
TLS before the greeting, and data connections are protected (``PROT P``) by default.

    python examples/implicit_ftps.py CERT.pem KEY.pem [DIRECTORY]

Without a certificate it makes a throwaway CA with trustme (``pip install trustme``), writes
the CA to ``ca.pem`` in the current directory and prints a curl command that trusts it::

    python examples/implicit_ftps.py
    curl --cacert ca.pem ftps://alice:wonderland@127.0.0.1:9990/

``build_server(directory, context)`` makes the server from any server-side
``ssl.SSLContext`` (tests pass one with a trustme certificate).
"""

from __future__ import annotations

import ssl
import sys
from pathlib import Path

import trio

import trio_ftp

PORT = 9990  # 990 is the registered port, but binding it needs privileges


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
    print(f"wrote ca.pem: curl --cacert ca.pem ftps://alice:wonderland@127.0.0.1:{PORT}/")
    return context


def build_server(directory: Path, context: ssl.SSLContext) -> trio_ftp.Server:
    """Implicit FTPS for ``directory`` (``alice``/``wonderland``)."""
    return trio_ftp.Server(
        [trio_ftp.User("alice", "wonderland", base_path=directory)],
        ssl=context,
        tls_data_required=True,  # refuse PROT C: files never cross in clear either
        idle_timeout=300,
        socket_timeout=60,
    )


def main() -> None:
    argv = sys.argv[1:]
    directory = Path(argv[2] if len(argv) >= 3 else ".")
    server = build_server(directory, server_context(argv))
    print(f"implicit FTPS for {directory.resolve()} on 127.0.0.1:{PORT}")
    trio.run(server.run, "127.0.0.1", PORT)


if __name__ == "__main__":
    main()
