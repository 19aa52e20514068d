#!/usr/bin/env bash
# Runs the cargo-fuzz targets (fuzz/fuzz_targets) for a bounded time each.
#   scripts/fuzz.sh                 # 20 s per target (what the test script runs)
#   scripts/fuzz.sh 3600 filter     # a long run of one target
# Installs cargo-fuzz from crates.io when missing. Runs on the stable toolchain: coverage
# instrumentation without a sanitizer needs no nightly flags (-s none). Findings land in
# fuzz/artifacts/<target>/; the corpus grows in fuzz/corpus/<target>/ (seeds/ is committed).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-20}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(filter patch resource)

if ! cargo fuzz --version 2>/dev/null | grep -q '^cargo-fuzz 0\.13'; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
cargo fetch --locked
cargo fuzz build -s none -O
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    echo "fuzzing $t for ${secs}s"
    # -timeout: one input taking over 5 s is a finding (a hang), not a slow machine.
    cargo fuzz run -s none -O "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -timeout=5 -rss_limit_mb=1024 -print_final_stats=1 2>&1 |
        grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units|INFO: seed corpus|==[0-9]+== ERROR|thread .* panicked|SUMMARY|artifact_prefix)' || true
    # The pipeline above swallows the exit status: a finding leaves an artifact behind.
    if compgen -G "artifacts/$t/*" >/dev/null; then
        echo "fuzz target $t found a failing input:" >&2
        ls "artifacts/$t" >&2
        exit 1
    fi
done
