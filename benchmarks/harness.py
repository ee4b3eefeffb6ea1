"""What the benchmarks share: a sandbox in its own process, and a command measured from outside."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
