#!/bin/sh
# Entry point of the PostgreSQL stand-in image (postgres-standin.Containerfile): on first
# start, initialise $PGDATA with POSTGRES_USER/POSTGRES_PASSWORD and create POSTGRES_DB,
# like the official image; then run the command (postgres with its arguments).
set -eu
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
    user="${POSTGRES_USER:-postgres}"
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [ "${POSTGRES_DB:-$user}" != postgres ]; then
        echo "CREATE DATABASE \"${POSTGRES_DB:-$user}\" OWNER \"$user\"" \
            | postgres --single -D "$PGDATA" -j postgres >/dev/null
    fi
    echo "stand-in entrypoint: initialised $PGDATA (user $user, database ${POSTGRES_DB:-$user})"
fi
if [ "${1:-}" = postgres ]; then
    shift
    # Like the official image: listen on every interface of the container's network
    # unless the command says otherwise (a later -c wins).
    exec postgres -c listen_addresses='*' "$@"
fi
exec "$@"
