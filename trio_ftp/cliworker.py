"""The command line's server factory for ``--workers`` (one call in each worker process).

It cannot live in ``trio_ftp/__main__.py``: under ``python -m trio_ftp`` that module is
``__main__``, which multiprocessing's ``spawn`` does not re-import in the workers, so a
function defined there would not unpickle.
"""

from __future__ import annotations

import argparse
import functools
import logging

from .logsetup import configure_logging
from .opsendpoint import OpsEndpoint
from .server import Server
from .workers import WorkerContext

__all__ = ["worker_server"]

logger = logging.getLogger("trio_ftp.workers")


def worker_server(args: argparse.Namespace, context: WorkerContext) -> Server:
    """The server the command line describes, on this worker's slice of the data ports,
    counting its limits with the other workers (the machine's store, unless
    ``--state-store`` names a shared one)."""
    from .__main__ import attach_transfer_log, build_server, reload_config  # (imports us)

    configure_logging(args.log_level, args.log_format, args.log_file, worker=context.index)
    worker_args = argparse.Namespace(**vars(args))
    worker_args.data_ports = context.data_ports
    if worker_args.state_store is None:  # limits count every worker of this machine
        worker_args.state_store = f"sqlite:///{context.state_path}"
    server = build_server(worker_args)
    attach_transfer_log(server, worker_args)
    server.runtime.reload = functools.partial(reload_config, server, worker_args)
    if args.metrics_address is not None:  # one endpoint per worker: PORT + its index
        host, port = args.metrics_address
        server.runtime.serving_hooks.append(
            functools.partial(_start_endpoint, server, host, port + context.index)
        )
    return server


def _start_endpoint(server: Server, host: str, port: int, address: tuple[str, int]) -> None:
    """Start a worker's metrics and health endpoint (in its trio thread)."""
    endpoint = OpsEndpoint(server, host, port)
    endpoint.start()
    logger.info("metrics and health on http://%s:%d/", *endpoint.address)
