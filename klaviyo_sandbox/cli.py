"""``klaviyo-sandbox``: run the local Klaviyo API, or show what a run left in a list."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from klaviyo_sandbox.faults import FaultPlan
from klaviyo_sandbox.models import SandboxStore
from klaviyo_sandbox.server import SandboxServer
from klaviyo_sandbox.settings import SandboxSettings

MEMBER_COLUMNS = ("email", "first_name", "last_name", "phone_number", "external_id", "email_marketing")
EXIT_STDOUT_CLOSED = 128 + 13  # 128 + SIGPIPE, named by number: Windows has no signal.SIGPIPE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="klaviyo-sandbox",
        description="A local, Klaviyo-compatible API for trying and testing target-klaviyo.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the API on 127.0.0.1 until SIGINT/SIGTERM")
    serve.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    serve.add_argument("--port-file", type=Path, help="write the bound port to this file")
    serve.add_argument("--db", default=":memory:", help="SQLite file for the state (default: in memory)")
    serve.add_argument("--api-key", required=True, help="the private API key requests must carry")
    serve.add_argument(
        "--list", action="append", default=[], metavar="ID[=NAME]", help="a list that exists (repeatable)"
    )
    serve.add_argument("--job-delay", type=float, default=0.2, help="seconds an import job takes")
    serve.add_argument(
        "--fail-domain",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="profiles with an email at DOMAIN fail in job processing (import errors)",
    )
    serve.add_argument(
        "--refuse-domain",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="bulk requests with an email at DOMAIN fail with 400 pointing at that profile",
    )
    serve.add_argument(
        "--cancel-domain",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="import jobs with an email at DOMAIN end as cancelled, importing nothing",
    )
    serve.add_argument("--no-rate-limits", action="store_true", help="turn Klaviyo's rate limits off")
    serve.add_argument(
        "--no-request-validation",
        action="store_true",
        help="skip checking request bodies against Klaviyo's spec (for benchmarks; tests keep it on)",
    )
    serve.add_argument("--rate-scale", type=float, default=1.0, help="multiply every rate limit")
    serve.add_argument("--fault-429", type=float, default=0.0, metavar="P", help="probability of a 429")
    serve.add_argument("--fault-5xx", type=float, default=0.0, metavar="P", help="probability of a 5xx")
    serve.add_argument(
        "--fault-drop", type=float, default=0.0, metavar="P", help="probability of a dropped connection"
    )
    serve.add_argument(
        "--fault-lost-answer",
        type=float,
        default=0.0,
        metavar="P",
        help="probability that a request is carried out but its answer is lost (connection dropped)",
    )
    serve.add_argument("--latency", type=float, default=0.0, metavar="SECONDS", help="added to every request")
    serve.add_argument("--seed", type=int, help="seed for the fault draws, to repeat a run")
    serve.add_argument(
        "--fault-only",
        action="append",
        metavar="'METHOD /api/path'",
        help="inject faults only into these operations "
        "(spec paths, e.g. 'POST /api/profile-bulk-import-jobs')",
    )

    members = commands.add_parser("members", help="print the members of a list")
    members.add_argument("--db", required=True, help="the SQLite file the server used")
    members.add_argument("list_id")
    members.add_argument("--json", action="store_true", help="one JSON object per member")
    return parser


def serve(args: argparse.Namespace) -> None:
    lists = dict(item.split("=", 1) if "=" in item else (item, f"Sandbox list {item}") for item in args.list)
    settings = SandboxSettings(
        api_key=args.api_key,
        lists=lists,
        job_delay=args.job_delay,
        fail_domains=frozenset(domain.lower() for domain in args.fail_domain),
        refuse_domains=frozenset(domain.lower() for domain in args.refuse_domain),
        cancel_domains=frozenset(domain.lower() for domain in args.cancel_domain),
        db=args.db,
        rate_limits=not args.no_rate_limits,
        validate_requests=not args.no_request_validation,
        rate_scale=args.rate_scale,
        faults=FaultPlan(
            throttle=args.fault_429,
            server_error=args.fault_5xx,
            drop=args.fault_drop,
            lost_answer=args.fault_lost_answer,
            latency=args.latency,
            seed=args.seed,
            operations=frozenset(args.fault_only) if args.fault_only else None,
        ),
    )
    server = SandboxServer(settings, args.port)
    if args.port_file:
        args.port_file.write_text(f"{server.server_address[1]}\n")
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server.start()
    print(f"Klaviyo sandbox listening on {server.url}", flush=True)
    stop.wait()
    server.stop()
    print("Klaviyo sandbox stopped.", flush=True)


def show_members(args: argparse.Namespace) -> None:
    if not Path(args.db).is_file():
        sys.exit(f"klaviyo-sandbox: no sandbox database at {args.db}")
    store = SandboxStore(args.db)
    if store.get_list(args.list_id) is None:
        sys.exit(f"klaviyo-sandbox: no list {args.list_id!r} in {args.db}")
    rows, after = [], 0
    while page := store.members(args.list_id, after):
        rows += page
        after = page[-1]["cursor"]
    if args.json:
        for row in rows:
            print(
                json.dumps(
                    {"id": row["id"], **row["attributes"], "email_marketing": row["email_marketing"]},
                    sort_keys=True,
                )
            )
        return
    table = [MEMBER_COLUMNS] + [
        (*(str(row["attributes"].get(column) or "") for column in MEMBER_COLUMNS[:-1]), _consent(row))
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(MEMBER_COLUMNS))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    print(f"{len(rows)} member(s) in list {args.list_id}")


def _consent(row: dict[str, Any]) -> str:
    """``SUBSCRIBED`` with its date and ``(historical)`` for a historical import; empty for none."""
    consent = row["email_marketing"]
    if consent is None:
        return ""
    words = [
        consent["consent"],
        consent["consented_at"] or "",
        "(historical)" if consent["historical_import"] else "",
    ]
    return " ".join(word for word in words if word)


def _stdout_closed() -> NoReturn:
    """Whoever read standard output stopped (``members ... | head``): exit quietly, as ``seq`` does.

    The exit status is that of a process ended by SIGPIPE, what ``seq 100000 | head -1``
    gives ``seq``, so ``set -o pipefail`` treats both alike. Python would flush what is
    left in ``sys.stdout`` at exit, fail again and print "Exception ignored ... BrokenPipeError";
    pointing the descriptor at /dev/null first lets that flush succeed (the recipe of
    Python's ``signal`` documentation, "Note on SIGPIPE").
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(EXIT_STDOUT_CLOSED)


def main(argv: list[str] | None = None) -> None:
    try:
        args = build_parser().parse_args(argv)  # inside: --help, piped into head, writes too
        if args.command == "serve":
            serve(args)
        else:
            show_members(args)
    except BrokenPipeError:  # before OSError, which it is: no "klaviyo-sandbox: [Errno 32] Broken pipe"
        _stdout_closed()
    except (OSError, ValueError) as error:
        sys.exit(f"klaviyo-sandbox: {error}")


if __name__ == "__main__":
    main()
