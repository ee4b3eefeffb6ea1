#!/usr/bin/env bash
# Run the sample pipeline: sample_data/customers.singer.jsonl -> target-klaviyo -> the bundled
# Klaviyo sandbox on 127.0.0.1, then show the list's members, the rejects and the report.
# The demo needs the package alone: the first run installs no test tools (scripts/test.sh adds them).
BOOTSTRAP_EXTRAS=""
source "$(dirname "$0")/bootstrap.sh"
cd "$ROOT"
WORK="$(mktemp -d)"
trap 'kill "$SANDBOX_PID" 2>/dev/null || true; wait "$SANDBOX_PID" 2>/dev/null || true' EXIT

klaviyo-sandbox serve --port 0 --port-file "$WORK/port" --db "$WORK/sandbox.db" \
  --api-key pk_sandbox_demo_key --list "SaMPLE=Sample customers" \
  --fail-domain bounce.example.net >"$WORK/sandbox.log" 2>&1 &
SANDBOX_PID=$!
for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
[ -s "$WORK/port" ] || { cat "$WORK/sandbox.log"; exit 1; }

# A new sandbox each time, so a new ledger each time (a ledger serves one api_url).
cat >"$WORK/local.json" <<JSON
{"api_url": "http://127.0.0.1:$(cat "$WORK/port")",
 "rejects_path": "$WORK/rejects.jsonl", "report_path": "$WORK/report.json",
 "ledger_path": "$WORK/ledger.sqlite"}
JSON

echo "== target-klaviyo (STATE on stdout, logs on stderr)"
target-klaviyo --config sample_data/config.example.json --config "$WORK/local.json" \
  <sample_data/customers.singer.jsonl
echo
echo "== Members of list SaMPLE in the sandbox"
klaviyo-sandbox members --db "$WORK/sandbox.db" SaMPLE
echo
echo "== Rejects ($WORK/rejects.jsonl)"
python - "$WORK/rejects.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    reject = json.loads(line)
    print(f"{reject['reason']:<20} {reject['detail']}")
PY
echo
echo "== Report ($WORK/report.json)"
cat "$WORK/report.json"
