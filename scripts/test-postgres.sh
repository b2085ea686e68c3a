#!/usr/bin/env bash
# The suite against PostgreSQL instead of SQLite: a throwaway cluster under
# var/postgres on 127.0.0.1:5433 (Debian's postgresql package, installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
DATA=$PWD/var/postgres
RUN_AS=()
[[ $(id -u) -eq 0 ]] && RUN_AS=(runuser -u postgres --)
mkdir -p "$DATA"
[[ $(id -u) -eq 0 ]] && chown postgres "$DATA"
if [[ ! -f $DATA/PG_VERSION ]]; then
    "${RUN_AS[@]}" "$BIN/initdb" -D "$DATA" -A trust -U postgres >/dev/null
fi
"${RUN_AS[@]}" "$BIN/pg_ctl" -D "$DATA" -o "-p 5433 -k $DATA -c listen_addresses=127.0.0.1" -l "$DATA/log" -w start >/dev/null
trap '"${RUN_AS[@]}" "$BIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null' EXIT
unset REDIS_URL SECRET_KEY SECRET_KEY_FILE DEBUG HTTPS
export DATABASE_URL=postgres://postgres@127.0.0.1:5433/chatweb
.venv/bin/python -m pytest "$@"
