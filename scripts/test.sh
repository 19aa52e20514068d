#!/usr/bin/env bash
# Runs every test of the workspace, installing what it needs on a fresh machine:
#   1. the JavaScript and Python plugin templates' own tests, then their components built from
#      source (npm's componentize-js, PyPI's componentize-py) for the end-to-end suite;
#   2. Rust unit tests and the end-to-end suite (the real server over HTTP on 127.0.0.1),
#      including the console's test in headless Chromium (Debian's chromium and
#      chromium-driver, installed here when missing), with PostgreSQL (Debian's package) as a
#      throwaway cluster on loopback for the store's PostgreSQL tests (scripts/pg.sh); then
#      the end-to-end suite once more with the servers on PostgreSQL (MW_BACKEND=postgres);
#   3. a short run of the cargo-fuzz targets (scripts/fuzz.sh; installs cargo-fuzz when missing);
#   4. the external SCIM conformance checker scim2-tester (PyPI, pinned in
#      tests/conformance/requirements.txt) against a live server with an empty tenant.
# The Python tools (scim2-server as a delivery target and the bench's peer, the Standard
# Webhooks verifier, scim2-tester) go into .venv first: the end-to-end suite uses them.
# CI (.ci/run) calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Rule plugins are built for wasm32-wasip2; a new machine does not have the target.
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi

# The console's browser test drives Debian's Chromium through ChromeDriver.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "the console test needs Chromium: apt-get install chromium chromium-driver (as root)" >&2
        exit 1
    fi
fi

# --- Python tools (pinned): used by the delivery tests, the bench and the conformance run --
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/conformance/requirements.txt -r bench/requirements.txt -r tests/delivery/requirements.txt -r examples/plugins/python/requirements.txt
export MW_PYTHON="$venv/bin/python"

# --- The JavaScript and Python plugin templates: their own tests, then built from source ----
# The end-to-end suite loads both components (tests/all/languages.rs) from this directory.
lang="$CARGO_TARGET_DIR/lang-plugins"
mkdir -p "$lang"
(cd examples/plugins/js && npm ci --silent --no-audit --no-fund && npm test --silent && node build.mjs "$lang/acme-rules-js.wasm")
(cd examples/plugins/python && "$venv/bin/python" -m unittest --quiet && PATH="$venv/bin:$PATH" sh build.sh "$lang/acme-rules-py.wasm")
export MW_LANG_PLUGINS="$lang"

# --- PostgreSQL: a throwaway cluster on loopback (Debian's package, an unprivileged user) ----
source scripts/pg.sh
pg_up
trap pg_down EXIT

cargo test --workspace --locked
# The end-to-end suite again with every server on PostgreSQL (a database of its own each).
MW_BACKEND=postgres cargo test --locked -p mapwright --test all
# The criterion-free benches (host/benches) are not built by `cargo test`; compile them (dev
# profile, against the same build) so a change cannot leave them broken.
cargo test --workspace --locked --benches --no-run

# Fuzzing: the filter parser, PATCH and resource parsing, 20 s each (longer runs: fuzz/README.md).
bash scripts/fuzz.sh 20

# --- External conformance: scim2-tester --------------------------------------------------

# The benchmark tool, in a quick run of every scenario (debug build, against the peer too):
# proof that it still drives both servers; its figures mean nothing at this size. Its binary
# comes from `cargo test --workspace` above (bench/tests/cli.rs runs it), built with the
# workspace's features: a separate `cargo build -p mapwright-bench` would resolve tokio,
# hyper and reqwest with fewer features and build them all again (~4 min on 2 cores).
test -x "$CARGO_TARGET_DIR/debug/mapwright-bench"
"$CARGO_TARGET_DIR/debug/mapwright-bench" --quick --server-bin "$CARGO_TARGET_DIR/debug/mapwright" \
    --peer "$venv/bin/scim2-server" --plugins-dir "$CARGO_TARGET_DIR/wasm-plugins/wasm32-wasip2/wasm-plugins" > "$CARGO_TARGET_DIR/bench-quick.txt"
grep -q "^## All results" "$CARGO_TARGET_DIR/bench-quick.txt"

bin="$CARGO_TARGET_DIR/debug/mapwright"
work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
    pg_down
}
trap cleanup EXIT
printf '[server]\nlisten = "127.0.0.1:0"\n' > "$work/mapwright.toml"
mw() { "$bin" --config "$work/mapwright.toml" --data-dir "$work" "$@"; }
mw tenant add conformance >/dev/null
token=$(mw idp add conformance checker --kind generic --rate-per-second 0 --json | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["token"])')
# The binary itself in the background (not the mw function: $! would be a subshell, and
# killing it would leave the server running).
RUST_LOG=warn "$bin" --config "$work/mapwright.toml" --data-dir "$work" serve > "$work/stdout" 2> "$work/server.log" &
server_pid=$!
url=""
for _ in $(seq 1 100); do
    url=$(sed -n 's/^Mapwright listening on //p' "$work/stdout" | head -n1)
    [ -n "$url" ] && break
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "the server did not start:" >&2
    cat "$work/server.log" >&2
    exit 1
fi
echo "scim2-tester against $url/scim/v2/conformance/checker"
"$venv/bin/python" tests/conformance/scim2_tester_check.py "$url/scim/v2/conformance/checker" "$token"
# The load tool against a server it did not start (--url), quick: it must drive it cleanly.
"$CARGO_TARGET_DIR/debug/mapwright-bench" --quick --url "$url/scim/v2/conformance/checker" --token "$token" > "$CARGO_TARGET_DIR/bench-url.txt"
