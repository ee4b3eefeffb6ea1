"""Records per second: target-klaviyo against the sandbox, and the SDK's reference loader on the same file.

For each ``--records`` count (default 1,000,000) this writes one Singer file of
generated customers in the shape of ``sample_data/`` (a few percent unusable or
repeated rows, a STATE every 10,000 records), then, in each of ``--rounds``
interleaved rounds:

- starts ``klaviyo-sandbox serve`` with Klaviyo's rate limits, a job processing
  time from ``--job-delays`` (default 10 s) and request validation off (the sandbox
  shares the two cores; the tests check every request against the spec), and runs
  ``target-klaviyo`` with the sample mapping and default settings otherwise
  (``max_profiles_per_run: 0``, record validation on);
- runs ``meltanolabs-target-csv`` 0.5.0 with its defaults on the same file
  (installed into ``benchmarks/.venv-target-csv`` on first use).

It prints records/s for both and their ratio, wall and CPU seconds, peak RSS
(from the kernel, outside the process), jobs, rejects and throttled answers, as
medians over the rounds; ``--write`` appends them to ``benchmarks/results.md``.

    python benchmarks/throughput.py [--records 200000 1000000] [--rounds 3] [--job-delays 0 10] [--write]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

from harness import BIN, measure, publish, row, run_target
from streams import SEGMENT_MAPPING, segment_messages

from target_klaviyo.settings.schema import DEFAULT_MAX_JOBS_IN_FLIGHT

CSV_VENV = Path(__file__).with_name(".venv-target-csv")
CSV_REQUIREMENT = "meltanolabs-target-csv==0.5.0"


def target_csv() -> Path:
    """The reference loader, in a virtual environment of its own (its SDK pins may differ from ours)."""
    executable = CSV_VENV / "bin" / "target-csv"
    if not executable.exists():
        venv.create(CSV_VENV, with_pip=True)
        subprocess.run([str(CSV_VENV / "bin" / "pip"), "install", "-q", CSV_REQUIREMENT], check=True)
    return executable


def write_stream(path: Path, records: int) -> None:
    with path.open("w") as out:
        for message in segment_messages(records):
            out.write(json.dumps(message) + "\n")


def run_klaviyo(stream: Path, job_delay: float, in_flight: int | None, workdir: Path) -> dict:
    settings: dict[str, object] = (
        dict(SEGMENT_MAPPING) if in_flight is None else {**SEGMENT_MAPPING, "max_jobs_in_flight": in_flight}
    )
    # A cold run, with the ledger as by default, but a new one each run: a ledger binds to its
    # sandbox's URL, and one that knew the profiles would make the run send none.
    ledger = workdir / "ledger"
    shutil.rmtree(ledger, ignore_errors=True)
    settings["ledger_path"] = str(ledger / "ledger.sqlite")
    options = ["--job-delay", str(job_delay), "--no-request-validation"]
    result, report = run_target(str(BIN / "target-klaviyo"), stream, workdir, options, **settings)
    return {
        "measurement": result,
        "jobs": len(report["job_ids"]),
        "exported": report["counts"]["exported"],
        "rejected": report["counts"]["rejected"],
        "throttled": report["requests"]["throttled"],
    }


def run_csv(executable: Path, stream: Path, workdir: Path) -> dict:
    output = workdir / "csv"
    output.mkdir(exist_ok=True)
    for old in output.iterdir():
        old.unlink()
    (workdir / "csv.json").write_text(json.dumps({"output_path": str(output)}))
    result = measure([str(executable), "--config", str(workdir / "csv.json")], stream, workdir / "csv.log")
    return {"measurement": result}


def median(results: list[dict], field: str) -> float:
    return statistics.median(getattr(result["measurement"], field) for result in results)


def walls(results: list[dict]) -> str:
    return ", ".join(f"{result['measurement'].wall:.1f}" for result in results)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--job-delays", type=float, nargs="+", default=[10.0])
    parser.add_argument(
        "--in-flight", type=int, nargs="+", default=[None], help="max_jobs_in_flight (default: the default)"
    )
    parser.add_argument("--no-csv", action="store_true", help="skip the reference loader")
    parser.add_argument("--write", action="store_true", help="append the results to benchmarks/results.md")
    args = parser.parse_args()
    csv = None if args.no_csv else target_csv()

    rows = [
        "| records | loader | max_jobs_in_flight | job time (s) | median wall (s) | records/s | x target-csv | CPU (s) "
        "| peak RSS (MB) | jobs | exported | rejected | throttled answers | runs (s) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for records in args.records:
        with tempfile.TemporaryDirectory(prefix="target-klaviyo-throughput-") as tmp:
            workdir = Path(tmp)
            stream = workdir / "customers.singer.jsonl"
            write_stream(stream, records)
            settings = [(delay, in_flight) for delay in args.job_delays for in_flight in args.in_flight]
            klaviyo: dict[tuple[float, int | None], list[dict]] = {setting: [] for setting in settings}
            reference: list[dict] = []
            # Interleaved, so that a slower moment of the machine hits every loader alike.
            for _ in range(args.rounds):
                for delay, in_flight in settings:
                    klaviyo[delay, in_flight].append(run_klaviyo(stream, delay, in_flight, workdir))
                    print(
                        f"{records:,} records, target-klaviyo, {delay:g} s jobs, in flight {in_flight}: "
                        f"{klaviyo[delay, in_flight][-1]['measurement']}",
                        file=sys.stderr,
                    )
                if csv is not None:
                    reference.append(run_csv(csv, stream, workdir))
                    print(f"{records:,} records, target-csv: {reference[-1]['measurement']}", file=sys.stderr)
        csv_rate = records / median(reference, "wall") if reference else None
        for (delay, in_flight), results in klaviyo.items():
            rate = records / median(results, "wall")
            last = results[-1]
            rows.append(
                f"| {records:,} | target-klaviyo | {in_flight or DEFAULT_MAX_JOBS_IN_FLIGHT} | {delay:g} | {median(results, 'wall'):.1f} | {rate:,.0f} "
                f"| {f'{rate / csv_rate:.2f}' if csv_rate else 'n/a'} | {median(results, 'cpu'):.1f} "
                f"| {median(results, 'peak_rss_mb'):.0f} | {last['jobs']} | {last['exported']:,} "
                f"| {last['rejected']:,} | {', '.join(str(r['throttled']) for r in results)} "
                f"| {walls(results)} |"
            )
        if reference and csv_rate:
            rows.append(
                row(
                    f"{records:,}", "target-csv 0.5.0", "", "", f"{median(reference, 'wall'):.1f}",
                    f"{csv_rate:,.0f}", "1.00", f"{median(reference, 'cpu'):.1f}",
                    f"{median(reference, 'peak_rss_mb'):.0f}", "", "", "", "", walls(reference),
                )
            )  # fmt: skip
    publish(rows, "Throughput", rounds=args.rounds, validation=False, write=args.write)


if __name__ == "__main__":
    main()
