#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback, for the tests and the bench (sourced, not run):
#
#   source scripts/pg.sh
#   pg_up                   # installs Debian's postgresql when missing (as root), starts a
#                           # cluster in a new temporary directory, exports MW_DATABASE_URL
#   pg_down                 # stops it and removes the directory (safe when it never started)
#
# The cluster runs as an unprivileged user (`mapwright-pg`, created when the script runs as
# root; the current user otherwise), listens on 127.0.0.1 on a free port and on a socket in its
# own directory, trusts loopback (it holds nothing but test data) and skips fsync (a test kills
# Mapwright, never the database).

pg_bin=""
pg_dir=""
pg_user=""

pg_as() {
    if [ -n "$pg_user" ]; then runuser -u "$pg_user" -- "$@"; else "$@"; fi
}

pg_up() {
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
    if [ -z "$pg_bin" ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
            pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
        else
            echo "the PostgreSQL tests need Debian's postgresql package (apt-get install postgresql, as root)" >&2
            return 1
        fi
    fi
    if [ "$(id -u)" = 0 ]; then
        # initdb refuses to run as root.
        id -u mapwright-pg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin mapwright-pg
        pg_user=mapwright-pg
    fi
    # Its own directory under /tmp, which the cluster's user can reach.
    pg_dir=$(mktemp -d /tmp/mapwright-pg.XXXXXX)
    [ -n "$pg_user" ] && chown "$pg_user" "$pg_dir"
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    pg_as "$pg_bin/initdb" -D "$pg_dir/data" -U mapwright --auth=trust -E UTF8 --locale=C >"$pg_dir/initdb.log" 2>&1 \
        || { cat "$pg_dir/initdb.log" >&2; return 1; }
    pg_as "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -o \
        "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$pg_dir -c fsync=off -c full_page_writes=off -c max_connections=400" start >/dev/null \
        || { cat "$pg_dir/server.log" >&2; return 1; }
    export MW_DATABASE_URL="postgres://mapwright@127.0.0.1:$port/postgres"
    echo "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
}

pg_down() {
    if [ -n "$pg_dir" ] && [ -d "$pg_dir/data" ]; then
        pg_as "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    if [ -n "$pg_dir" ]; then rm -rf "$pg_dir"; fi
    pg_dir=""
}
