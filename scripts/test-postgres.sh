#!/usr/bin/env bash
# The suite against PostgreSQL instead of SQLite: a throwaway cluster under
# var/postgres on 127.0.0.1:5433. Documents' vectors need pgvector, which Debian 12 does
# not package: the server comes from the pgserver wheel (PostgreSQL 16 with pgvector
# built in), unpacked into var/pgserver; docker-compose uses the pgvector/pgvector image.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
PGSERVER=pgserver==0.1.4
if [[ ! -x var/pgserver/pgserver/pginstall/bin/initdb ]]; then
    .venv/bin/pip install -q --disable-pip-version-check --no-deps --target var/pgserver "$PGSERVER"
fi
BIN=$PWD/var/pgserver/pgserver/pginstall/bin
# The server runs as the postgres user (it refuses root): it must reach its own files.
if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then useradd --system --no-create-home postgres; fi
DATA=$PWD/var/postgres
RUN_AS=()
[[ $(id -u) -eq 0 ]] && RUN_AS=(runuser -u postgres --)
mkdir -p "$DATA"
[[ $(id -u) -eq 0 ]] && chown postgres "$DATA"
major=$("$BIN/postgres" --version | sed -E 's/.* ([0-9]+)\..*/\1/')
if [[ -f $DATA/PG_VERSION && $(cat "$DATA/PG_VERSION") != "$major" ]]; then
    rm -rf "${DATA:?}"/*  # a throwaway cluster of another server version (Debian's, before)
fi
if [[ ! -f $DATA/PG_VERSION ]]; then
    "${RUN_AS[@]}" "$BIN/initdb" -D "$DATA" -A trust -U postgres >/dev/null
fi
"${RUN_AS[@]}" "$BIN/pg_ctl" -D "$DATA" -o "-p 5433 -k $DATA -c listen_addresses=127.0.0.1" -l "$DATA/log" -w start >/dev/null
trap '"${RUN_AS[@]}" "$BIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null' EXIT
unset REDIS_URL SECRET_KEY SECRET_KEY_FILE DEBUG HTTPS
export DATABASE_URL=postgres://postgres@127.0.0.1:5433/chatweb
.venv/bin/python -m pytest "$@"
