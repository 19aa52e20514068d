#!/usr/bin/env bash
# The load and scale benchmarks (BENCHMARKS.md): builds Mapwright and the load generator in
# release, installs the peer SCIM server (Python scim2-server, PyPI) in .venv-bench, and runs
# every scenario against both on 127.0.0.1. Takes 15-20 minutes on 2 cores and a few GB of
# disk for the 1M-user database (in a temporary directory, removed after).
#   scripts/bench.sh                      # everything
#   scripts/bench.sh --only memory        # one group: chain, scim, swap, noisy, store, memory, tenants, delivery
#   scripts/bench.sh --max-users 100000   # skip the 1M-user population
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
cargo build --release --locked -p mapwright -p mapwright-bench
# The second peer, the Rust scim-server crate behind axum: a workspace of its own (its sqlx
# SQLite cannot share a build with rusqlite's), in the same target directory.
cargo build --release --locked --manifest-path bench/peer-rs/Cargo.toml
venv="$root/.venv-bench"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r bench/requirements.txt
# The store scenarios need a PostgreSQL cluster: a throwaway one on loopback (as the test
# script starts), unless MW_DATABASE_URL names one already. Without PostgreSQL they are skipped.
if [ -z "${MW_DATABASE_URL:-}" ]; then
    source scripts/pg.sh
    if pg_up; then trap pg_down EXIT; else echo "no PostgreSQL: the store scenarios will be skipped" >&2; fi
fi
"$CARGO_TARGET_DIR/release/mapwright-bench" --peer "$venv/bin/scim2-server" \
    --peer-rs "$CARGO_TARGET_DIR/release/mapwright-bench-peer-rs" "$@"
