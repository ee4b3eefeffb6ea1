"""``klaviyo-sandbox serve`` and ``members`` as a user runs them."""

from __future__ import annotations

import signal
import subprocess
import time

import requests
from support import SANDBOX_BIN

from klaviyo_sandbox.models import SandboxStore


def start_server(tmp_path, *extra: str) -> tuple[subprocess.Popen, str]:
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [
            str(SANDBOX_BIN),
            "serve",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--api-key",
            "pk_cli",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    assert line.startswith("Klaviyo sandbox listening on http://127.0.0.1:"), line
    url = line.split()[-1]
    assert url.endswith(f":{port_file.read_text().strip()}")
    return process, url


def test_serve_binds_loopback_and_stops_on_sigterm(tmp_path):
    process, url = start_server(tmp_path, "--list", "CLI1=Newsletter")
    try:
        answer = requests.get(
            f"{url}/api/lists/CLI1",
            headers={"Authorization": "Klaviyo-API-Key pk_cli", "revision": "2026-07-15"},
            timeout=5,
        )
        assert answer.json()["data"]["attributes"]["name"] == "Newsletter"
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "Klaviyo sandbox stopped." in out


def test_serve_stops_on_sigint(tmp_path):
    process, _ = start_server(tmp_path)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=10)
    assert process.returncode == 0


def test_members_shows_what_a_run_left(tmp_path):
    db = tmp_path / "state.db"
    process, url = start_server(tmp_path, "--db", str(db), "--list", "CLI2", "--job-delay", "0")
    try:
        headers = {
            "Authorization": "Klaviyo-API-Key pk_cli",
            "revision": "2026-07-15",
            "Content-Type": "application/vnd.api+json",
        }
        body = {
            "data": {
                "type": "profile-bulk-import-job",
                "attributes": {
                    "profiles": {
                        "data": [
                            {"type": "profile", "attributes": {"email": "m@example.com", "first_name": "Mia"}}
                        ]
                    }
                },
                "relationships": {"lists": {"data": [{"type": "list", "id": "CLI2"}]}},
            }
        }
        job_id = requests.post(
            f"{url}/api/profile-bulk-import-jobs", json=body, headers=headers, timeout=5
        ).json()["data"]["id"]
        time.sleep(0.05)
        requests.get(f"{url}/api/profile-bulk-import-jobs/{job_id}", headers=headers, timeout=5)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    shown = subprocess.run(
        [str(SANDBOX_BIN), "members", "--db", str(db), "CLI2"], capture_output=True, text=True, check=True
    ).stdout
    assert "m@example.com" in shown
    assert "Mia" in shown
    assert "1 member(s) in list CLI2" in shown
    as_json = subprocess.run(
        [str(SANDBOX_BIN), "members", "--db", str(db), "CLI2", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"email": "m@example.com"' in as_json


def test_members_of_an_unknown_list_or_database_is_a_clear_error(tmp_path):
    db = tmp_path / "state.db"
    SandboxStore(str(db)).close()
    result = subprocess.run(
        [str(SANDBOX_BIN), "members", "--db", str(db), "NOPE"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "no list 'NOPE'" in result.stderr
    missing = subprocess.run(
        [str(SANDBOX_BIN), "members", "--db", str(tmp_path / "absent.db"), "L"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 1
    assert "no sandbox database at" in missing.stderr
    assert not (tmp_path / "absent.db").exists()


def test_members_piped_into_head_exits_quietly(tmp_path):
    """``members ... | head -1``: head leaves after one line; the rest of the output meets a closed pipe."""
    db = tmp_path / "state.db"
    store = SandboxStore(str(db))
    store.ensure_list("BIG")
    # Far more than a pipe holds (64 KiB), so writing certainly goes on after head has left.
    ids = [
        store.upsert_profile({"email": f"person{i}@example.com", "first_name": "P"})[0] for i in range(3000)
    ]
    store.add_members("BIG", ids)
    store.close()
    for extra in ([], ["--json"]):
        members = subprocess.Popen(
            [str(SANDBOX_BIN), "members", "--db", str(db), "BIG", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        head = subprocess.Popen(["head", "-1"], stdin=members.stdout, stdout=subprocess.PIPE)
        members.stdout.close()  # head alone reads the pipe, as in a shell pipeline
        first_line = head.communicate(timeout=30)[0].decode()
        stderr = members.stderr.read().decode()
        members.stderr.close()
        assert members.wait(timeout=30) == 141, stderr  # 128 + SIGPIPE, as for `seq 100000 | head -1`
        assert stderr == ""
        assert first_line.startswith("{" if extra else "email ")
