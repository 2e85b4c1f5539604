"""The benchmark command: start every server, run every row interleaved, print the table.

    python3 -m benchmarks --quick            # under 3 minutes
    python3 -m benchmarks --json out.json    # full mode, and every sample as JSON
    python3 -m benchmarks --object-store-only --quick   # only the S3 row (moto_server)
    python3 benchmarks/bench.py --quick      # the same, run as a script

Progress goes to stderr, the Markdown table to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

if __package__ in (None, ""):  # run as a script: make the ``benchmarks`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.children import Children
from benchmarks.clients import ClientWorker
from benchmarks.datafiles import make_data_set
from benchmarks.machine import caption, describe, footnotes, headers
from benchmarks.measure import Probe
from benchmarks.objectstore import ObjectStoreResult, render, run_object_store
from benchmarks.report import Results, metrics, render_json, render_markdown, session_notes
from benchmarks.runner import Runner, rows_for
from benchmarks.servers import (
    FLOOR,
    FLOOR_TASKS,
    FLOOR_TASKS_2P,
    LIMIT,
    WORKERS_TRIO,
    available_kinds,
)
from benchmarks.settings import FULL, QUICK, Mode
from benchmarks.tlscerts import make_tls_files

__all__ = ["main"]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m benchmarks",
        description="Compare trio_ftp with pyftpdlib, aioftp and vsftpd on loopback.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 3 minutes")
    parser.add_argument("--rounds", type=int, help="repetitions of every row (median taken)")
    parser.add_argument(
        "--servers",
        help="comma-separated subset of trio_ftp,pyftpdlib,aioftp,vsftpd (default: all; "
        "vsftpd only if installed)",
    )
    parser.add_argument("--no-limit", action="store_true", help="skip the sendfile limit")
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the trio floors (bare trio sessions, and with the task structure)",
    )
    parser.add_argument(
        "--session-clients", type=int, help="client processes sharing the concurrent sessions"
    )
    store = parser.add_mutually_exclusive_group()
    store.add_argument(
        "--no-object-store", action="store_true", help="skip the object-store row (moto S3)"
    )
    store.add_argument(
        "--object-store-only", action="store_true", help="run only the object-store row"
    )
    parser.add_argument("--json", type=Path, help="also write every sample to this file")
    parser.add_argument("--tmpdir", type=Path, help="where the data files go (default: $TMPDIR)")
    return parser.parse_args(argv)


def _mode(args: argparse.Namespace) -> Mode:
    mode = QUICK if args.quick else FULL
    changes: dict[str, int] = {}
    if args.rounds:
        changes["rounds"] = args.rounds
    if args.session_clients:
        changes["session_clients"] = args.session_clients
    return Mode(**{**mode.__dict__, **changes})


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 if any measurement failed, 130 if interrupted."""
    args = _arguments(argv)
    mode = _mode(args)
    names = args.servers.split(",") if args.servers else None
    kinds = available_kinds(names)
    compares_trio_ftp = any(kind.name == "trio_ftp" for kind in kinds)
    if not args.no_limit:
        kinds = [*kinds, LIMIT]
    if not args.no_floor and compares_trio_ftp:
        kinds = [*kinds, FLOOR, FLOOR_TASKS]
        if any(kind.name == WORKERS_TRIO for kind in kinds):
            kinds = [*kinds, FLOOR_TASKS_2P]
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    started = time.monotonic()
    store: ObjectStoreResult | None = None
    try:
        with contextlib.ExitStack() as stack:
            children = stack.enter_context(Children())
            workdir = Path(
                stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="trio-ftp-bench-", dir=args.tmpdir)
                )
            )
            if not args.no_object_store:
                store = run_object_store(
                    children,
                    workdir,
                    size=mode.object_store_size,
                    big_size=mode.object_store_big,
                    rounds=mode.rounds,
                    log=lambda line: print(line, file=sys.stderr),
                )
            if args.object_store_only:
                assert store is not None
                print(render(store))
                return 0
            print(f"{mode.name} mode: making the data files in {workdir}", file=sys.stderr)
            data = make_data_set(
                workdir / "root", mode.transfer_size, mode.listing_files, mode.small_files
            )
            probe = Probe(
                data=data,
                client=ClientWorker(children),
                session_clients=[ClientWorker(children) for _ in range(mode.session_clients)],
                children=children,
                workdir=workdir,
                tls=make_tls_files(workdir),
            )
            results = Results([kind.name for kind in kinds])
            runner = Runner(children, kinds, probe, workdir, results)
            runner.start_all()
            runner.run(rows_for(mode, probe), mode.rounds)
    except KeyboardInterrupt:
        print("interrupted: servers stopped, temporary files removed", file=sys.stderr)
        return 130
    elapsed = time.monotonic() - started
    rows = metrics(mode)
    meta = describe(mode, elapsed)
    print(caption(meta) + "\n")
    notes = footnotes(kinds, mode) + session_notes(results, mode.session_levels)
    print(render_markdown(results, rows, headers(kinds), notes))
    if store is not None:
        print("\n" + render(store))
    print(f"{mode.name} mode took {elapsed:.0f} s", file=sys.stderr)
    if args.json:
        render_json(args.json, results, rows, mode, meta)
    return 1 if any(results.failures.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
