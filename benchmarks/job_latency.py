"""What Klaviyo's job processing time costs a run: the same input with near-instant and slow jobs.

For each job processing time (``--job-delays``, default 0 and 10 seconds) and each
``max_jobs_in_flight`` (``--in-flight``, default the target's default), this starts
``klaviyo-sandbox serve`` with Klaviyo's real rate limits and that job time, runs
the real ``target-klaviyo`` command on one generated Singer file of ``--records``
customers (default 100,000), and reads the run's JSON report. It prints, per
setting, the median wall time over ``--rounds`` runs, the extra time over the
fastest job time, jobs, and the throttled answers the target received.

    python benchmarks/job_latency.py [--records N] [--rounds R] [--job-delays 0 10]
                                     [--in-flight 10] [--target LABEL=PATH ...] [--write]

``--target`` compares other builds of the target in the same run (for example the
previous release, installed in another virtual environment); by default only the
one installed beside this Python runs. ``--write`` appends the table, with the date and the machine, to benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from harness import BIN, publish, row, run_target
from streams import customer_messages


def write_stream(path: Path, records: int) -> None:
    with path.open("w") as out:
        for message in customer_messages(records, state_every=10_000):
            out.write(json.dumps(message) + "\n")


def one_run(target: str, stream: Path, job_delay: float, in_flight: int, workdir: Path) -> dict:
    result, report = run_target(
        target, stream, workdir, ["--job-delay", str(job_delay)], max_jobs_in_flight=in_flight
    )
    return {
        "wall": result.wall,
        "peak_rss_mb": result.peak_rss_mb,
        "jobs": len(report["job_ids"]),
        "exported": report["counts"]["exported"],
        "throttled": report.get("requests", {}).get("throttled", "n/a"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--job-delays", type=float, nargs="+", default=[0.0, 10.0])
    parser.add_argument("--in-flight", type=int, nargs="+", default=[10])
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="a target-klaviyo executable to measure (repeatable; default: the one beside this Python)",
    )
    parser.add_argument("--write", action="store_true", help="append the results to benchmarks/results.md")
    args = parser.parse_args()
    targets = dict(item.split("=", 1) for item in args.target) or {"this": str(BIN / "target-klaviyo")}

    with tempfile.TemporaryDirectory(prefix="target-klaviyo-bench-") as tmp:
        workdir = Path(tmp)
        stream = workdir / "customers.singer.jsonl"
        write_stream(stream, args.records)
        runs: dict[tuple[str, int, float], list[dict]] = {}
        # Rounds are interleaved so that a slower moment of the machine hits every setting alike.
        for _ in range(args.rounds):
            for label, target in targets.items():
                for in_flight in args.in_flight:
                    for delay in args.job_delays:
                        result = one_run(target, stream, delay, in_flight, workdir)
                        runs.setdefault((label, in_flight, delay), []).append(result)

    fastest = min(args.job_delays)
    rows = [
        "| target | max_jobs_in_flight | job time (s) | median wall (s) | extra over fastest job time (s) "
        "| runs (s) | jobs | profiles exported | throttled answers | target peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for (label, in_flight, delay), results in runs.items():
        wall = statistics.median(r["wall"] for r in results)
        base = statistics.median(r["wall"] for r in runs[(label, in_flight, fastest)])
        each = ", ".join(f"{r['wall']:.1f}" for r in results)
        throttled = [r["throttled"] for r in results]
        peak = statistics.median(r["peak_rss_mb"] for r in results)
        rows.append(
            row(
                label, in_flight, f"{delay:g}", f"{wall:.1f}", f"{wall - base:+.1f}", each, results[-1]["jobs"],
                f"{results[-1]['exported']:,}", ", ".join(map(str, throttled)), f"{peak:.0f}",
            )
        )  # fmt: skip
    publish(rows, "Job processing time", rounds=args.rounds, validation=True, write=args.write)


if __name__ == "__main__":
    main()
