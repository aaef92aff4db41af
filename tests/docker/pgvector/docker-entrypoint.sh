#!/bin/sh
# What the official postgres image's entrypoint does, for what compose needs: on the first
# start (no $PGDATA/PG_VERSION) initdb with POSTGRES_USER as the superuser and
# POSTGRES_PASSWORD as its password, password (scram-sha-256) auth from any host,
# listen on every address, create POSTGRES_DB; then run the command (postgres).
set -eu

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "error: database is uninitialized and POSTGRES_PASSWORD is not set" >&2
        exit 1
    fi
    POSTGRES_USER="${POSTGRES_USER:-postgres}"
    POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        # on the unix socket only while the database is made
        pg_ctl --pgdata="$PGDATA" --wait --options="-c listen_addresses=''" start
        createdb --username="$POSTGRES_USER" "$POSTGRES_DB"
        pg_ctl --pgdata="$PGDATA" --wait --mode=fast stop
    fi
    echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
