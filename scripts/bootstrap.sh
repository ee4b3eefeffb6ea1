# Sourced by the other scripts: make .venv and install the project into it, with the extras that
# BOOTSTRAP_EXTRAS names: "test" (the test tools) unless the sourcing script sets it; empty for the
# package alone, as scripts/demo.sh does. Only Python 3.10+ is needed. Each install is stamped
# per version of pyproject.toml and per extras, so it is redone only when either changes; the
# test tools' install includes the package, so it stands for the package alone too.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
EXTRAS="${BOOTSTRAP_EXTRAS-test}"
HASH="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
STAMP="$VENV/.installed-$HASH-${EXTRAS:-package}"

_bootstrap_say() { echo "bootstrap: $*" >&2; }

_bootstrap_install() {  # $1: what pip installs, the checkout with its extras
  local python="$VENV/bin/python"
  # pip 21.3 is the first that installs a pyproject.toml-only project in editable mode (PEP 660);
  # Python 3.10.0's venv has 21.2. A newer pip is left as it is: upgrading it costs seconds.
  "$python" -c 'import pip, sys; sys.exit(tuple(map(int, pip.__version__.split(".")[:2])) < (21, 3))' ||
    "$python" -m pip install --upgrade pip || return
  # --no-compile: Python compiles a module the first time it is imported; compiling every module
  # of every package here was half of the install's time.
  "$python" -m pip install --disable-pip-version-check --no-compile -e "$1"
}

if [ ! -x "$VENV/bin/python" ]; then
  _bootstrap_say "creating $VENV with $PYTHON ($("$PYTHON" --version 2>&1))"
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] && ! { [ -z "$EXTRAS" ] && compgen -G "$VENV/.installed-$HASH-*" >/dev/null; }; then
  if [ -n "$EXTRAS" ]; then
    what="target-klaviyo with its [$EXTRAS] extra"
    requirement="$ROOT[$EXTRAS]"
  else
    what="target-klaviyo and its dependencies (no test tools)"
    requirement="$ROOT"
  fi
  _bootstrap_say "installing $what into $VENV (once, and again when pyproject.toml changes;" \
    "pip's log: $VENV/install.log) ..."
  started=$SECONDS
  if ! _bootstrap_install "$requirement" >"$VENV/install.log" 2>&1; then
    cat "$VENV/install.log" >&2
    exit 1
  fi
  # pip's last "Successfully installed a-1 b-2 ..." line (an upgrade of pip itself comes first).
  installed="$(awk '/^Successfully installed/ { n = NF - 2 } END { print n + 0 }' "$VENV/install.log")"
  _bootstrap_say "installed $installed packages in $((SECONDS - started)) s"
  find "$VENV" -maxdepth 1 -name '.installed-*' ! -name ".installed-$HASH-*" -delete  # older pyproject.toml
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
