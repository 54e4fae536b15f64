#!/usr/bin/env bash
# How soon what `chimewatch up` ingests can be read from its embedded store, under a steady load, and the ingest
# latency at that load.
#
#   bash benches/visibility.sh [EVENTS_PER_SEC] [SECONDS]      (defaults: 6000 180)
#
# The load tool (benches/load.rs) posts batches of 20 JS SDK events stamped with the wall clock, paced at
# EVENTS_PER_SEC, for SECONDS: long enough for the aggregator's one-minute windows to close as in production (a window
# closes once every shard has seen an event 10 s past its end). Then the aggregator's own histograms on `/metrics`
# say how long each closed window waited until the store had accepted its datums
# (`chimewatch_aggregator_window_visible_seconds`), and how long log events waited from their arrival at the
# aggregator until the store had them (`chimewatch_aggregator_log_visible_seconds`, the oldest of each write), and
# how long the embedded log took to make a put durable and to commit (`chimewatch_stream_put_latency_seconds`,
# `chimewatch_stream_call_latency_seconds`). The pace is a share of the peak `benches/ingest.sh` measures for `up` on
# the same machine: 6,000 events/s was half of it on 2026-12-02.
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-6000}
seconds=${2:-180}
bin=${CHIMEWATCH_BIN:-target/release/chimewatch}
load=${CHIMEWATCH_LOAD:-}

if [ -z "$load" ]; then
  cargo build --release --locked --bin chimewatch --bench load >&2
  load=$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -1)
fi

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" up --listen "127.0.0.1:$port" --data-dir "$work/up" --log warn 2>"$work/up.log" & up=$!; pids+=($up)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
curl -s -o /dev/null "http://127.0.0.1:$port/healthz" || { echo "up did not answer; its log:" >&2; cat "$work/up.log" >&2; exit 1; }

echo "==> up: $rate events/s for $seconds s, events stamped with the wall clock" >&2
"$load" --url "http://127.0.0.1:$port" --clients 32 --seconds "$seconds" --batch 20 --now \
  --rate "$(python3 -c "print($rate / 20)")" --watch-pid "$up" --report-every 60 >"$work/load.json"
# Windows close 10 s after the last event's minute ends at the latest: wait for the last to be published.
sleep 12
curl -s "http://127.0.0.1:$port/metrics" >"$work/metrics.txt"

python3 - "$work/load.json" "$work/metrics.txt" <<'EOF'
import json, sys
sys.path.insert(0, "benches")
from histogram import bounds
load = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
text = open(sys.argv[2]).read()
out = {"events_per_sec": load["events_per_sec"], "p50_ms": load["latency_ms"]["p50"],
       "p99_ms": load["latency_ms"]["p99"], "errors": load["errors"], "server_rss_kib": load.get("server_rss_kib")}
# And how long the embedded log took to make a put durable, and each of its group commits (write and fsync) took.
for what, name in (("window_visible", "aggregator_window_visible"), ("log_visible", "aggregator_log_visible"),
                   ("stream_put", "stream_put_latency"), ("stream_commit", "stream_call_latency")):
    out[what] = bounds(text, f"chimewatch_{name}_seconds")
print(json.dumps(out))
EOF
