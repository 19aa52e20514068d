#!/bin/sh
# Builds app.py and rules.py into a WebAssembly component against Mapwright's contract (the
# WIT in `wit/`, world `host-rules`): `sh build.sh` writes `acme-rules.wasm`, or the path given
# as the first argument. Needs componentize-py (`pip install -r requirements.txt`).
set -eu
out=$(realpath -m "${1:-acme-rules.wasm}")
cd "$(dirname "$0")"
componentize-py -d wit -w host-rules componentize -p . app -o "$out"
echo "$out: $(du -m "$out" | cut -f1) MiB"
