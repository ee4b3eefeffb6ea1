#!/usr/bin/env bash
# The suite on the oldest and the newest supported Python this machine has (3.10 to 3.14),
# each in its own venv (.venv-3.X); an interpreter that is missing is said, not failed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SUPPORTED="3.10 3.11 3.12 3.13 3.14"
declare -A FOUND=()
for version in $SUPPORTED; do
  for candidate in "python$version" "$HOME/.pyenv/versions/$version"*/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$version" ]; then
      FOUND[$version]="$(command -v "$candidate")"
      break
    fi
  done
done
present=()
for version in $SUPPORTED; do [ -n "${FOUND[$version]:-}" ] && present+=("$version"); done
for version in $SUPPORTED; do
  [ -z "${FOUND[$version]:-}" ] && echo "Python $version: not on this machine, skipped."
done
if [ "${#present[@]}" -eq 0 ]; then
  echo "No supported Python (3.10 to 3.14) besides the default one: the suite ran on python3 alone."
  exit 0
fi
oldest="${present[0]}"
newest="${present[${#present[@]}-1]}"
for version in $(printf '%s\n' "$oldest" "$newest" | sort -u); do
  echo "== the suite on Python $version (${FOUND[$version]})"
  VENV="$ROOT/.venv-$version" PYTHON="${FOUND[$version]}" bash -c \
    'source scripts/bootstrap.sh && cd "$ROOT" && python --version && pytest -q -p no:cacheprovider'
done
