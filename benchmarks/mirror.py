"""What a mirror run costs with ``mirror_scope: synced``: a list of ``--records`` members (default
1,000,000) where 1% left the segment, against an unchanged re-run, the run and the apply together.

Setup (untimed, its time printed): ``klaviyo-sandbox serve`` with its state in a file, rate limits
off and instant jobs; a first mirror run sends the segment and, as the first mirror run of a list
always does, reads the whole list so the ledger learns each member's profile id (at Klaviyo's pace
in the target, 100 members a request and 700 requests a minute: about 14 minutes for a million);
``target-klaviyo-mirror`` applies its empty plan. Then every membership is dated a day earlier, as
the night between two runs would leave it.

Measured, the sandbox restarted on the same state with Klaviyo's rate limits and ``--job-delay``
seconds of job processing (default 10), each a ``target-klaviyo`` run then ``target-klaviyo-mirror``:

1. unchanged: the same segment again;
2. 1% left: the segment without every 100th customer.

It prints per run the wall time of the run, of the apply and of both, the members read, the
removals, and the target's peak RSS (from the kernel, from outside).

    python benchmarks/mirror.py [--records N] [--job-delay 10] [--write]
    python benchmarks/mirror.py --workdir DIR --phase setup   # then, on a quiet machine:
    python benchmarks/mirror.py --workdir DIR --phase measure [--write]

The setup takes most of the time (the whole read): ``--phase`` runs it apart from the measured
runs, in ``--workdir``, so that only the measured runs need the machine alone.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from harness import BIN, Measurement, measure, publish, row, run_against, sandbox
from streams import customer_messages

LEFT_EVERY = 100  # 1%
READ = re.compile(r"read ([\d,]+) member\(s\) of the list")


def write_streams(folder: Path, records: int) -> tuple[Path, Path]:
    """The segment as a full extract (ACTIVATE_VERSION first), and the same without 1% of it."""
    same, left = folder / "segment.jsonl", folder / "segment-left.jsonl"
    activate = json.dumps({"type": "ACTIVATE_VERSION", "stream": "customers", "version": 1}) + "\n"
    with same.open("w") as out_same, left.open("w") as out_left:
        for message in customer_messages(records):
            line = json.dumps(message) + "\n"
            out_same.write(line)
            record = message.get("record")
            if record is None or record["id"] % LEFT_EVERY:
                out_left.write(line)
            if message["type"] == "SCHEMA":
                out_same.write(activate)
                out_left.write(activate)
    return same, left


def free_port() -> int:
    """A port for both sandboxes: the ledger belongs to one account URL, so the second has the first's."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def a_night_later(database: Path) -> None:
    """Every membership as if it had been made a day earlier (the sandbox is stopped)."""
    earlier = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE memberships SET joined_group_at = ?", (earlier,))
    connection.close()


@dataclass
class Mirrored:
    run: Measurement
    apply: Measurement
    members_read: str
    removed: int
    jobs: int


def run_and_apply(url: str, stream: Path, workdir: Path, settings: dict[str, object]) -> Mirrored:
    measured, report = run_against(url, str(BIN / "target-klaviyo"), stream, workdir, **settings)
    found = READ.search((workdir / "target.log").read_text())
    applied = measure(
        [str(BIN / "target-klaviyo-mirror"), "--config", str(workdir / "config.json")],
        Path("/dev/null"),
        workdir / "mirror.log",
    )
    report = json.loads((workdir / "report.json").read_text())  # with the removals the apply set
    return Mirrored(
        measured,
        applied,
        found.group(1) if found else "?",
        int(report["counts"].get("removed", 0)),
        len(report["job_ids"]),
    )


def phases(workdir: Path, args: argparse.Namespace) -> list[tuple[str, Mirrored]]:
    """The setup and the measured runs, as ``--phase`` says; the measured runs' results."""
    same, left, database = workdir / "segment.jsonl", workdir / "segment-left.jsonl", workdir / "sandbox.db"
    settings: dict[str, object] = {
        "sync_mode": "mirror",
        "mirror_scope": "synced",
        "ledger_path": str(workdir / "ledger.sqlite"),
        "mirror_plan_path": str(workdir / "plan" / "plan.json"),
    }
    port = workdir / "sandbox-port"
    if args.phase in ("setup", "both"):
        write_streams(workdir, args.records)
        port.write_text(str(free_port()))
        started = time.monotonic()
        state = ("--db", str(database), "--port", port.read_text())  # the later --port wins
        with sandbox(workdir, *state, "--no-rate-limits", "--no-request-validation") as url:
            setup = run_and_apply(url, same, workdir, settings)
        print(
            f"setup: first mirror run {time.monotonic() - started:.0f} s, {setup.members_read} members read"
        )
        a_night_later(database)
    if args.phase == "setup":
        return []
    results = []
    state = ("--db", str(database), "--port", port.read_text())
    with sandbox(workdir, *state, "--job-delay", str(args.job_delay)) as url:
        for name, stream in (("unchanged", same), ("1% left", left)):
            results.append((name, run_and_apply(url, stream, workdir, settings)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--job-delay", type=float, default=10.0)
    parser.add_argument("--write", action="store_true", help="append the results to benchmarks/results.md")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep the state here (default: a temporary folder)"
    )
    parser.add_argument("--phase", choices=("setup", "measure", "both"), default="both")
    args = parser.parse_args()

    if args.workdir is None:
        with tempfile.TemporaryDirectory(prefix="target-klaviyo-bench-") as tmp:
            results = phases(Path(tmp), args)
    else:
        args.workdir.mkdir(parents=True, exist_ok=True)
        results = phases(args.workdir, args)
    if args.phase == "setup":
        return
    rows = [
        "| run | target (s) | target-klaviyo-mirror (s) | both (s) | import jobs | members read | removed | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in results:
        run, apply = result.run, result.apply
        rows.append(
            row(
                name,
                f"{run.wall:.1f}",
                f"{apply.wall:.1f}",
                f"{run.wall + apply.wall:.1f}",
                result.jobs,
                result.members_read,
                f"{result.removed:,}",
                f"{run.peak_rss_mb:.0f}",
            )
        )
    title = f"Mirror, mirror_scope synced, {args.records:,} members, 1% left, {args.job_delay:g} s jobs"
    publish(rows, title, rounds=1, validation=True, write=args.write)


if __name__ == "__main__":
    main()
