#!/usr/bin/env bash
# Build the sdist and the wheel, check them, install the wheel into a clean venv, and run the
# sample pipeline from that install against the sandbox it ships: what a user gets from the index.
source "$(dirname "$0")/bootstrap.sh"
cd "$ROOT"
OUT="$(mktemp -d)"
SANDBOX_PID=""
trap '[ -n "$SANDBOX_PID" ] && kill "$SANDBOX_PID" 2>/dev/null; rm -rf "$OUT"' EXIT

echo "== build (sdist and wheel)"
if ! python -m build --sdist --wheel --outdir "$OUT/dist" . >"$OUT/build.log" 2>&1; then
  cat "$OUT/build.log"; exit 1
fi
ls "$OUT/dist"
if [ -n "${DIST_DIR:-}" ]; then  # the release publishes exactly the files checked here
  mkdir -p "$DIST_DIR" && cp "$OUT"/dist/* "$DIST_DIR"/
fi
twine check --strict "$OUT"/dist/*
python scripts/check_wheel_contents.py "$OUT"/dist/*.whl "$OUT"/dist/*.tar.gz

echo "== install the wheel into a clean venv"
"$PYTHON" -m venv "$OUT/venv"
"$OUT/venv/bin/python" -m pip install --quiet "$OUT"/dist/*.whl >"$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
"$OUT/venv/bin/target-klaviyo" --about >/dev/null
"$OUT/venv/bin/target-klaviyo" --version

echo "== the sample pipeline, from the wheel"
"$OUT/venv/bin/klaviyo-sandbox" serve --port 0 --port-file "$OUT/port" --db "$OUT/sandbox.db" \
  --api-key pk_sandbox_demo_key --list "SaMPLE=Sample customers" --fail-domain bounce.example.net \
  >"$OUT/sandbox.log" 2>&1 &
SANDBOX_PID=$!
for _ in $(seq 100); do [ -s "$OUT/port" ] && break; sleep 0.1; done
[ -s "$OUT/port" ] || { cat "$OUT/sandbox.log"; exit 1; }
cat >"$OUT/local.json" <<JSON
{"api_url": "http://127.0.0.1:$(cat "$OUT/port")", "report_path": "$OUT/report.json", "rejects_path": "$OUT/rejects.jsonl"}
JSON
(cd "$OUT" && "$OUT/venv/bin/target-klaviyo" --config "$ROOT/sample_data/config.example.json" \
  --config "$OUT/local.json" <"$ROOT/sample_data/customers.singer.jsonl" >"$OUT/state.jsonl")
"$OUT/venv/bin/python" - "$OUT/report.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
assert report["outcome"] == "complete" and report["counts"]["exported"] == 24, report["counts"]
print(f"installed wheel: run {report['outcome']}, {report['counts']['exported']} profiles exported")
PY
"$OUT/venv/bin/klaviyo-sandbox" members --db "$OUT/sandbox.db" SaMPLE | tail -1
