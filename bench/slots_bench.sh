#!/usr/bin/env bash
# Benchmarks of the codis-slots module against the same redis-server without it.
# Needs redis-server and redis-benchmark (Debian: redis-server redis-tools) and a
# release build of the module; prints every figure with the command that made it.
#
#   bench/slots_bench.sh                  # all sections
#   SLOTS_BENCH=set,mem bench/slots_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -j"${JOBS:-2}" -p codis-slots --lib --example slots_bench
export CODIS_SLOTS_SO="$CARGO_TARGET_DIR/release/libcodis_slots.so"
test -f "$CODIS_SLOTS_SO" || { echo "missing $CODIS_SLOTS_SO" >&2; exit 1; }
exec "$CARGO_TARGET_DIR/release/examples/slots_bench"
