"""Did a change move the speed? Two ``target-klaviyo`` executables, side by side, on one stream.

For a reshaping that must not change speed (issue 18), this runs each ``--target`` in
turn, round after round (A B A B ...), on the same generated customer stream (default
200,000 records, a STATE every 10,000), in two modes:

- ``dry run``: ``dry_run: true`` against the sandbox: reading, validation, mapping,
  dedupe and the report, nothing sent;
- ``real run``: the profiles sent to ``klaviyo-sandbox serve`` with Klaviyo's rate
  limits and jobs that complete at once, so the run measures the target, not the job time.

It prints the median wall and CPU seconds and peak RSS of each, and the ratio of each
target's median to the first target's; ``--write`` appends the table to ``results.md``.

    python benchmarks/before_after.py --target before=PATH --target after=PATH [--records 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from harness import Measurement, publish, row, run_target
from streams import customer_messages

MODES = {"dry run": {"dry_run": True}, "real run": {}}


def write_stream(path: Path, records: int) -> None:
    with path.open("w") as out:
        for message in customer_messages(records, state_every=10_000):
            out.write(json.dumps(message) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--target", action="append", required=True, metavar="LABEL=PATH")
    parser.add_argument("--write", action="store_true", help="append the results to benchmarks/results.md")
    args = parser.parse_args()
    targets = dict(item.split("=", 1) for item in args.target)

    with tempfile.TemporaryDirectory(prefix="target-klaviyo-bench-") as tmp:
        workdir = Path(tmp)
        stream = workdir / "customers.singer.jsonl"
        write_stream(stream, args.records)
        runs: dict[tuple[str, str], list[Measurement]] = {}
        exported: dict[tuple[str, str], int] = {}
        # Interleaved, so that a slower moment of the machine hits both targets alike.
        for _ in range(args.rounds):
            for mode, settings in MODES.items():
                for label, target in targets.items():
                    result, report = run_target(target, stream, workdir, ["--job-delay", "0"], **settings)
                    runs.setdefault((mode, label), []).append(result)
                    exported[(mode, label)] = report["counts"]["exported"]

    first = next(iter(targets))
    rows = [
        row(
            "mode",
            "target",
            "median wall (s)",
            "runs (s)",
            "ratio to " + first,
            "median CPU (s)",
            "peak RSS (MB)",
            "profiles exported",
        ),
        row("---", "---", "---:", "---", "---:", "---:", "---:", "---:"),
    ]
    for (mode, label), measured in runs.items():
        wall = statistics.median(m.wall for m in measured)
        base = statistics.median(m.wall for m in runs[(mode, first)])
        rows.append(
            row(
                mode,
                label,
                f"{wall:.1f}",
                ", ".join(f"{m.wall:.1f}" for m in measured),
                f"{wall / base:.2f}",
                f"{statistics.median(m.cpu for m in measured):.1f}",
                f"{max(m.peak_rss_mb for m in measured):.0f}",
                f"{exported[(mode, label)]:,}",
            )
        )
    publish(rows, "Before and after", rounds=args.rounds, validation=True, write=args.write)


if __name__ == "__main__":
    main()
