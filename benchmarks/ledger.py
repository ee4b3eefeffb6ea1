"""What the ledger saves: a cold run, an unchanged re-run and a run with changes, on one sandbox.

For each ledger backend (SQLite always; PostgreSQL with ``--postgres-url``), this starts
``klaviyo-sandbox serve`` with Klaviyo's real rate limits and ``--job-delay`` seconds of
job processing (default 10), and runs the real ``target-klaviyo`` command three times
against it, with a new ledger:

1. cold: ``--records`` customers (default 1,000,000), an empty ledger;
2. unchanged: the same input again;
3. changed: the same input with 1% of the customers changed (another first name) and
   0.5% new ones.

It prints, per run, the wall time and its ratio to the cold run, the import jobs, the
profiles sent and unchanged, and the target's peak RSS (from the kernel, from outside).

    python benchmarks/ledger.py [--records N] [--job-delay 10] [--postgres-url URL] [--write]

``--postgres-url`` is a SQLAlchemy URL of a PostgreSQL server whose role may create databases
(``bash scripts/postgres.sh`` starts one and prints it): the ledger goes into a new database
``target_klaviyo_benchmark`` there. ``--write`` appends the table, with
the date and the machine, to benchmarks/results.md. Between runs (untimed) the PostgreSQL
ledger is vacuumed and analysed, as autovacuum would have done between two nightly runs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from harness import BIN, publish, row, run_against, sandbox
from sqlalchemy import create_engine, text
from streams import customer_messages

CHANGED_EVERY = 100  # 1%
NEW_EVERY = 200  # 0.5%


def write_streams(folder: Path, records: int) -> tuple[Path, Path]:
    """The segment, and the same segment with 1% changed and 0.5% new."""
    same, changed = folder / "segment.jsonl", folder / "segment-changed.jsonl"
    with same.open("w") as out_same, changed.open("w") as out_changed:
        for message in customer_messages(records, state_every=10_000):
            line = json.dumps(message) + "\n"
            out_same.write(line)
            record = message.get("record")
            if record is not None and record["id"] % CHANGED_EVERY == 0:
                record["first_name"] += " (changed)"
                line = json.dumps(message) + "\n"
            out_changed.write(line)
        for message in customer_messages(records // NEW_EVERY, tag=1):
            if message["type"] == "RECORD":
                out_changed.write(json.dumps(message) + "\n")
    return same, changed


def new_database(url: str) -> str:
    """A new, empty database for the ledger, made with the role of ``url`` (which needs CREATEDB)."""
    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP DATABASE IF EXISTS target_klaviyo_benchmark"))
        connection.execute(text("CREATE DATABASE target_klaviyo_benchmark"))
    engine.dispose()
    return url.rsplit("/", 1)[0] + "/target_klaviyo_benchmark"


def three_runs(
    place: dict[str, str], same: Path, changed: Path, job_delay: float, workdir: Path
) -> list[dict]:
    """Cold, unchanged and changed, one after another on one sandbox (the ledger binds to its lists)."""
    results = []
    with sandbox(workdir, "--job-delay", str(job_delay)) as url:
        for name, stream in (("cold", same), ("unchanged", same), ("1% changed, 0.5% new", changed)):
            measured, counts = run_against(url, str(BIN / "target-klaviyo"), stream, workdir, **place)
            results.append({"run": name, "measured": measured, "report": counts})
            settle(place)
    return results


def settle(place: dict[str, str]) -> None:
    """Untimed, between runs: what PostgreSQL's autovacuum does in the hours between two nightly runs.

    Without it, autovacuum of the million rows a cold run wrote starts during the next run,
    on the same two cores (seen here: 13:52:51 in a run from 13:52:30 to 13:53:00).
    """
    url = place.get("ledger_url")
    if url:
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text("VACUUM (ANALYZE) target_klaviyo_ledger_profiles"))
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--job-delay", type=float, default=10.0)
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--write", action="store_true", help="append the results to benchmarks/results.md")
    args = parser.parse_args()

    rows = [
        "| ledger | run | wall (s) | of the cold run's | import jobs | profiles sent | unchanged | peak RSS (MB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="target-klaviyo-bench-") as tmp:
        workdir = Path(tmp)
        same, changed = write_streams(workdir, args.records)
        backends: dict[str, dict[str, str]] = {"SQLite": {"ledger_path": str(workdir / "ledger.sqlite")}}
        if args.postgres_url:
            backends["PostgreSQL"] = {"ledger_url": new_database(args.postgres_url)}
        for label, place in backends.items():
            results = three_runs(place, same, changed, args.job_delay, workdir)
            cold = results[0]["measured"].wall
            for result in results:
                measured, report = result["measured"], result["report"]
                counts = report["counts"]
                rows.append(
                    row(
                        label,
                        result["run"],
                        f"{measured.wall:.1f}",
                        f"{measured.wall / cold:.2f}x",
                        f"{len(report['job_ids']):,}",
                        f"{counts['exported']:,}",
                        f"{counts.get('unchanged', 0):,}",
                        f"{measured.peak_rss_mb:.0f}",
                    )
                )
    title = f"Ledger, {args.records:,} profiles, {args.job_delay:g} s jobs"
    publish(rows, title, rounds=1, validation=True, write=args.write)


if __name__ == "__main__":
    main()
