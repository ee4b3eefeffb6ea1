#!/usr/bin/env bash
# Lint, format check and the whole test suite (unit, sandbox, CLI integration, SDK standard tests).
BOOTSTRAP_EXTRAS=test  # the test tools, on top of what the demo may have installed
source "$(dirname "$0")/bootstrap.sh"
cd "$ROOT"
ruff check .
ruff format --check .
mypy
exec pytest "$@"
