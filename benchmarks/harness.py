"""What the benchmarks share: a sandbox in its own process, and a command measured from outside."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

BIN = Path(sys.executable).parent
RESULTS = Path(__file__).with_name("results.md")
API_KEY = "pk_benchmark_key"
LIST_ID = "BeNch1"


@contextmanager
def sandbox(workdir: Path, *options: str) -> Iterator[str]:
    """``klaviyo-sandbox serve`` with Klaviyo's rate limits (and ``options``); yields its URL."""
    port_file = workdir / "port"
    port_file.unlink(missing_ok=True)
    command = [str(BIN / "klaviyo-sandbox"), "serve", "--port", "0", "--port-file", str(port_file)]
    command += ["--api-key", API_KEY, "--list", LIST_ID, *options]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not port_file.exists() or not port_file.read_text().strip():
            if process.poll() is not None:
                sys.exit("klaviyo-sandbox did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass
class Measurement:
    wall: float
    cpu: float  # user + system seconds of the process itself
    peak_rss_mb: float


def measure(command: list[str], stdin: Path, log: Path, env: dict[str, str] | None = None) -> Measurement:
    """Run ``command`` on ``stdin``; time, CPU and peak RSS come from the kernel (wait4), from outside."""
    environment = {
        key: value for key, value in (env or os.environ).items() if not key.startswith("TARGET_KLAVIYO_")
    }
    started = time.monotonic()
    with stdin.open("rb") as source, log.open("w") as stderr:
        process = subprocess.Popen(
            command, stdin=source, stdout=subprocess.DEVNULL, stderr=stderr, env=environment
        )
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{command[0]} failed:\n{log.read_text()[-3000:]}")
    return Measurement(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def run_target(
    target: str, stream: Path, workdir: Path, sandbox_options: list[str], **settings: object
) -> tuple[Measurement, dict]:
    """Run a target-klaviyo command against a fresh sandbox on ``stream``; its measurement and report."""
    with sandbox(workdir, *sandbox_options) as url:
        return run_against(url, target, stream, workdir, **settings)


def run_against(
    url: str, target: str, stream: Path, workdir: Path, **settings: object
) -> tuple[Measurement, dict]:
    """Run a target-klaviyo command against the sandbox at ``url`` on ``stream``; its measurement and report."""
    report = workdir / "report.json"
    config = {
        "api_key": API_KEY,
        "list_id": LIST_ID,
        "api_url": url,
        "max_profiles_per_run": 0,
        "report_path": str(report),
        **settings,
    }
    (workdir / "config.json").write_text(json.dumps(config))
    result = measure([target, "--config", str(workdir / "config.json")], stream, workdir / "target.log")
    return result, json.loads(report.read_text())


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def row(*cells: object) -> str:
    """One row of a Markdown table."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def publish(rows: list[str], title: str, *, rounds: int, validation: bool, write: bool) -> None:
    """Print a result table; with ``write``, append it to results.md under a dated heading that
    gives the command as it was run."""
    table = "\n".join(rows)
    conditions = (
        f"the sandbox with Klaviyo's rate limits and request validation {'on' if validation else 'off'}, "
        f"on the same two cores. Median of {rounds} interleaved round(s)."
    )
    print(table)
    arguments = [argument for argument in sys.argv[1:] if argument != "--write"]
    command = " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *arguments])
    if write:
        heading = f"\n## {title}, {datetime.now(timezone.utc):%Y-%m-%d}\n\n`{command}` on {machine()}; {conditions}\n\n"
        with RESULTS.open("a") as out:
            out.write(heading + table + "\n")
