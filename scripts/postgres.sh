#!/usr/bin/env bash
# Start a PostgreSQL server for the ledger tests and print the URL they take (LEDGER_TEST_POSTGRES_URL).
# Uses the machine's cluster (Debian's postgresql-common), installing PostgreSQL from the operating
# system's packages where it is missing; needs root. `scripts/postgres.sh stop` stops what it started.
set -euo pipefail
ROLE=target_klaviyo_test
if ! command -v pg_lsclusters >/dev/null 2>&1; then
  echo "postgres.sh: installing PostgreSQL from the operating system's packages" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
read -r version name port status _ < <(pg_lsclusters --no-header | head -n 1) || true
if [ -z "${version:-}" ]; then
  version="$(ls /usr/lib/postgresql | sort -n | tail -n 1)"
  pg_createcluster "$version" main >&2
  read -r version name port status _ < <(pg_lsclusters --no-header | head -n 1)
fi
if [ "${1:-}" = "stop" ]; then
  pg_ctlcluster "$version" "$name" stop >&2 || true
  exit 0
fi
[ "$status" = "online" ] || pg_ctlcluster "$version" "$name" start >&2
su postgres -c "psql -p $port -qtAc \"SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'\"" | grep -q 1 ||
  su postgres -c "psql -p $port -qc \"CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$ROLE'\"" >&2
echo "postgresql+psycopg://$ROLE:$ROLE@127.0.0.1:$port/postgres"
