#!/usr/bin/env bash
# Two builds of chimewatch side by side under the same load, to measure what a change is worth:
#
#   bash benches/ab.sh OLD_BIN NEW_BIN [up|gateway] [RUNS] [CLIENTS] [SECONDS]     (defaults: up 3 32 20)
#
# The two binaries run alternately (old then new, then new then old, ...), each run on a fresh instance, so that the
# machine's drift over minutes falls on both alike. `up` runs on its embedded backends, in a fresh data directory
# each run; `gateway` puts to one kinesalite stream of 64 shards that all runs share. Prints one JSON line per run,
# then the medians and NEW's ratio to OLD in events per server CPU-second; fails if any request failed. To get OLD_BIN: `git checkout OLD && cargo build --release --bin chimewatch && cp
# target/release/chimewatch /tmp/chimewatch-old`, then back. Needs what scripts/test.sh installs (.venv, tests/node).
set -euo pipefail
old=$(realpath "$1") new=$(realpath "$2") mode=${3:-up} runs=${4:-3} clients=${5:-32} seconds=${6:-20}
cd "$(dirname "$0")/.."
cargo build --release --locked --bench load >&2
load=$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -1)

work=$(mktemp -d)
pids=()     # what runs for the whole script (kinesalite)
server=""  # the server of the current run
cleanup() {
  for p in "${pids[@]}" $server; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "nothing answers at $1" >&2; exit 1; }

if [ "$mode" = gateway ]; then
  node tests/node/kinesalite.js >"$work/kinesalite.log" 2>&1 & pids+=($!)
  for _ in $(seq 100); do kinesis=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$work/kinesalite.log" | head -1 || true); [ -n "$kinesis" ] && break; sleep 0.1; done
  export AWS_ENDPOINT_URL_KINESIS=$kinesis AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
  .venv/bin/python - "$kinesis" <<'EOF'
import sys, boto3
kinesis = boto3.client("kinesis", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
kinesis.create_stream(StreamName="bench", ShardCount=64)
kinesis.get_waiter("stream_exists").wait(StreamName="bench")
EOF
fi

for run in $(seq "$runs"); do
  order="old new"; [ $((run % 2)) = 0 ] && order="new old"
  for name in $order; do
    bin=$old; [ "$name" = new ] && bin=$new
    port=$(free_port)
    if [ "$mode" = gateway ]; then
      "$bin" gateway --stream bench --listen "127.0.0.1:$port" --pipeline-metrics false --log warn 2>"$work/$name.log" & pid=$!
    else
      "$bin" up --listen "127.0.0.1:$port" --data-dir "$work/$name-$run" --log warn 2>"$work/$name.log" & pid=$!
    fi
    server=$pid
    wait_for "http://127.0.0.1:$port/healthz"
    "$load" --url "http://127.0.0.1:$port" --clients "$clients" --seconds "$seconds" --batch 20 --rate 0 --watch-pid "$pid" \
      --report-every 3600 2>/dev/null \
      | python3 -c "import json,sys; d=json.load(sys.stdin); d['bin']='$name'; d['run']=$run; print(json.dumps(d))" \
      | tee -a "$work/results.jsonl"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    server=""
    rm -rf "$work/$name-$run"
  done
done

python3 - "$work/results.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda name, f: statistics.median(f(r) for r in rows if r["bin"] == name)
old = med("old", lambda r: r["events_per_server_cpu_sec"])
for name in ("old", "new"):
    cpu = med(name, lambda r: r["events_per_server_cpu_sec"])
    print(json.dumps({"bin": name, "events_per_server_cpu_sec": cpu, "vs_old": round(cpu / old, 2),
                      "events_per_sec": med(name, lambda r: r["events_per_sec"]),
                      "p99_ms": med(name, lambda r: r["latency_ms"]["p99"]), "rss_kib": med(name, lambda r: r["server_rss_kib"])}))
errors = sum(r["errors"] for r in rows)
if errors:
    sys.exit(f"{errors} requests failed: the figures above do not compare like with like")
EOF
