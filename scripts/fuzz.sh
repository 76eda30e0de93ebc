#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets) for SECONDS each (default 60), all
# at once at low priority, then prints each one's executions, coverage and findings.
# New interesting inputs land in fuzz/corpus/<target>/ (shrink them with
# `cargo +nightly fuzz cmin <target>` before committing); crashes in fuzz/artifacts/.
# Needs a nightly toolchain (rustup toolchain install nightly); installs cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo +nightly fuzz build -O
mkdir -p logs
targets=$(cargo +nightly fuzz list)
for t in $targets; do
    mkdir -p "corpus/$t"
    nice -n 19 cargo +nightly fuzz run -O "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 \
        > "logs/$t.log" 2>&1 &
done
status=0
wait || status=$?
for t in $targets; do
    echo "== $t"
    grep -E "^#[0-9]+.*(DONE|pulse)" "logs/$t.log" | tail -1 || true
    grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb" "logs/$t.log" || true
    grep -E "ERROR|panicked|SUMMARY" "logs/$t.log" | head -5 || true
done
if find artifacts -type f 2>/dev/null | grep -q .; then
    echo "crashes found:"; find artifacts -type f; exit 1
fi
echo "no crashes"
exit "$status"
