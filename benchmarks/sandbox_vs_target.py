"""Is the sandbox ever the bottleneck? Time both sides of a 10,000-profile job, in one run.

* sandbox: accept one POST /api/profile-bulk-import-jobs of 10,000 profiles (schema,
  email and phone validation on; rate limits off) and complete it (SQLite upserts);
* target: read, validate, map and dedupe 10,000 Singer records into that job's body
  (``dry_run``, so nothing is sent).

Prints the median of each and their ratio. Usage: ``python benchmarks/sandbox_vs_target.py [rounds]``.
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from streams import customer_messages
from support import API_KEY, LIST_ID, make_sandbox

from klaviyo_sandbox import SandboxServer
from target_klaviyo.target import TargetKlaviyo

PROFILES = 10_000


def singer_stream(round_number: int) -> str:
    return "".join(json.dumps(line) + "\n" for line in customer_messages(PROFILES, tag=round_number))


def job_body(round_number: int) -> bytes:
    profiles = [
        {
            "type": "profile",
            "attributes": {
                "email": f"s{round_number}-person{i}@example.com",
                "first_name": f"Person {i}",
                "phone_number": f"+1628{round_number % 1000:03d}{i:04d}",
                "location": {"city": "San Francisco"},
                "properties": {"plan": "pro", "ltv": i * 1.5},
            },
        }
        for i in range(PROFILES)
    ]
    body = {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": profiles}},
            "relationships": {"lists": {"data": [{"type": "list", "id": LIST_ID}]}},
        }
    }
    return json.dumps(body).encode()


def time_sandbox(server: SandboxServer, session: requests.Session, round_number: int) -> float:
    body = job_body(round_number)
    headers = {
        "Authorization": f"Klaviyo-API-Key {API_KEY}",
        "revision": "2026-07-15",
        "Content-Type": "application/vnd.api+json",
    }
    started = time.perf_counter()
    answer = session.post(
        f"{server.url}/api/profile-bulk-import-jobs", data=body, headers=headers, timeout=60
    )
    assert answer.status_code == 202, answer.text[:300]
    job_id = answer.json()["data"]["id"]
    status = session.get(f"{server.url}/api/profile-bulk-import-jobs/{job_id}", headers=headers, timeout=60)
    assert status.json()["data"]["attributes"]["status"] == "complete"
    return time.perf_counter() - started


def time_target(server: SandboxServer, round_number: int) -> float:
    config = {
        "api_key": API_KEY,
        "list_id": LIST_ID,
        "api_url": server.url,
        "dry_run": True,
        "property_mapping": {"first_name": "first_name", "phone_number": "phone", "location.city": "city"},
    }
    text = singer_stream(round_number)
    started = time.perf_counter()
    target = TargetKlaviyo(config=config, parse_env_config=False)
    target.listen(io.StringIO(text))
    elapsed = time.perf_counter() - started
    assert target.run.report.exported == PROFILES
    return elapsed


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    server = make_sandbox(job_delay=0, rate_limits=False)
    server.settings.record_requests = False
    session = requests.Session()
    sandbox_times, target_times = [], []
    for round_number in range(rounds):
        sandbox_times.append(time_sandbox(server, session, round_number))
        target_times.append(time_target(server, round_number))
    sandbox_median = statistics.median(sandbox_times)
    target_median = statistics.median(target_times)
    print(f"rounds: {rounds}, profiles per job: {PROFILES:,}")
    print(f"sandbox accepts and completes a job: median {sandbox_median:.3f} s")
    print(f"target produces a job's profiles:    median {target_median:.3f} s")
    print(f"ratio target / sandbox: {target_median / sandbox_median:.2f}x")
    server.stop()


if __name__ == "__main__":
    main()
