#!/usr/bin/env bash
# Every figure of BENCHMARKS.md next to its baseline, in one command:
#
#   bash benches/all.sh [CLIENTS SECONDS RUNS SHARDS]      (the last four go to benches/ingest.sh)
#
# In order: the criterion micro-benchmarks of each crate (each against a baseline in the same run), the memory runs
# of the archiver's spool and of the aggregator's windows (each against a small baseline run), the ingest load runs
# next to the blog sample's Lambda logic, and how soon `up`'s store has what it ingests at about half its peak.
# Builds in release mode (on a cold 2-core machine, 11 to 20 minutes before the first figure). Needs what
# scripts/test.sh installs (.venv, tests/node) and npm for the baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
criterion=(-- --warm-up-time 1 --measurement-time 3)

for bench in "chimewatch-model model" "chimewatch-stream log" "chimewatch-metrics metrics" "chimewatch-sip sip" "chimewatch-archiver encode"; do
  read -r crate name <<<"$bench"
  echo "==> criterion: $crate ($name)"
  cargo bench --locked -p "$crate" --bench "$name" "${criterion[@]}"
done

echo "==> memory: the archiver's spool, 200,000 rows in 1 partition (baseline) and in 5,000"
cargo run --release --locked -q -p chimewatch-archiver --example spool_memory -- 1 200000
cargo run --release --locked -q -p chimewatch-archiver --example spool_memory -- 5000 200000

echo "==> memory: the aggregator, 1,000 sessions in a window (baseline) and 100,000"
cargo run --release --locked -q -p chimewatch-aggregator --example sessions_memory -- 1000
cargo run --release --locked -q -p chimewatch-aggregator --example sessions_memory -- 100000

echo "==> the aggregator from the stream into windows, on the real JS capture's records, next to parsing them into Value and to serde_json's bare scan of them"
cargo build --release --locked -q -p chimewatch-metrics --example decode_instructions
for mode in value scan decode aggregate; do
  /usr/bin/time -f "    $mode: %U s of user CPU" target/release/examples/decode_instructions "$mode" 20000
  if command -v valgrind >/dev/null; then
    valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/decode_instructions "$mode" 2>&1 \
      | sed -n -e "s/.*Collected : \([0-9]*\)/    $mode: \1 instructions/p" -e "/records read/p"
  fi
done

echo "==> load: ingest next to the blog sample's Lambda (benches/ingest.sh)"
bash benches/ingest.sh "$@"

echo "==> load: how soon up's store has what it ingests, at about half its peak (benches/visibility.sh)"
bash benches/visibility.sh
