"""Fail when any measured module's coverage (lines and branches) is under a floor.

`coverage report` enforces only the total (`fail_under` in pyproject.toml); the project also
promises that no single module falls under 85%, so a well-tested package cannot hide an
untested one in the average. Run after `coverage combine`; reads the combined data through
coverage's own JSON report, so the percentages are the ones `coverage report` prints.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import coverage


def module_percentages() -> dict[str, float]:
    """Each measured file's percent covered, lines and branches together, as coverage counts."""
    cov = coverage.Coverage()
    cov.load()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coverage.json"
        cov.json_report(outfile=str(out))
        files = json.loads(out.read_text())["files"]
    return {name: entry["summary"]["percent_covered"] for name, entry in files.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--floor", type=float, default=85.0, help="percent (default: 85)")
    args = parser.parse_args(argv)
    percentages = module_percentages()
    if not percentages:
        print("coverage floor: no measured module (did `coverage combine` run?)")
        return 1
    under = {name: pct for name, pct in sorted(percentages.items()) if pct < args.floor}
    for name, pct in under.items():
        print(f"coverage floor: {name} at {pct:.1f}% is under {args.floor:g}%")
    if under:
        return 1
    lowest = min(percentages, key=percentages.__getitem__)
    print(
        f"coverage floor: all {len(percentages)} modules at or above {args.floor:g}% "
        f"(lowest: {lowest} at {percentages[lowest]:.1f}%)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
