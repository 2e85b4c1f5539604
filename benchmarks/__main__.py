"""``python3 -m benchmarks``: the one command that runs every row."""

from benchmarks.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
