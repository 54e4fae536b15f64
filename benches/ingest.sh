#!/usr/bin/env bash
# Ingest load runs next to their baseline: the blog sample's Lambda logic, then `chimewatch up` (the whole pipeline on
# its embedded backends), then `chimewatch gateway` against kinesalite.
#
#   bash benches/ingest.sh [CLIENTS] [SECONDS] [RUNS] [SHARDS]      (defaults: 32 20 3 64)
#
# CHIMEWATCH_BENCH_RATE=EVENTS_PER_SEC paces the clients (by default they post as fast as they are answered), to read
# latency at a given share of the peak; CHIMEWATCH_KINESIS_LINGER_MS sets the gateway's producer linger.
#
# Every run posts the same batches of 20 JS SDK events (benches/load.rs) and reports the server's events per
# CPU-second of its own process, events/s and latency. The baseline (benches/baseline/) is the AWS blog sample's
# meeting-events Lambda logic in Node with the AWS SDK v3, against a local stub of CloudWatch Logs and CloudWatch;
# the gateway puts to a kinesalite stream of SHARDS shards. Everything runs on this machine's cores, so kinesalite's
# CPU competes with the gateway's: the ratio in events per server CPU-second is the figure that carries over.
# Needs what scripts/test.sh installs (.venv with boto3, tests/node with kinesalite) and npm for the baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-32}
seconds=${2:-20}
runs=${3:-3}
shards=${4:-64}
bin=${CHIMEWATCH_BIN:-target/release/chimewatch}
load=${CHIMEWATCH_LOAD:-}
requests_per_sec=$(python3 -c "print(${CHIMEWATCH_BENCH_RATE:-0} / 20)")

if [ -z "$load" ]; then
  cargo build --release --locked --bin chimewatch --bench load >&2
  load=$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -1)
fi
[ -d benches/baseline/node_modules ] || (cd benches/baseline && npm ci --no-audit --no-fund --loglevel=error >&2)

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "nothing answers at $1" >&2; exit 1; }

# Runs the load tool RUNS times against URL, watching PID; prints one JSON line per run.
measure() {
  local name=$1 url=$2 pid=$3
  for run in $(seq "$runs"); do
    "$load" --url "$url" --clients "$clients" --seconds "$seconds" --batch 20 --rate "$requests_per_sec" --watch-pid "$pid" \
      --report-every 3600 \
      | python3 -c "import json,sys; d=json.load(sys.stdin); d['server']='$name'; d['run']=$run; print(json.dumps(d))"
  done
}

echo "==> baseline: the blog sample's Lambda logic (Node, AWS SDK v3) against a CloudWatch stub" >&2
stub_port=$(free_port); lambda_port=$(free_port)
node benches/baseline/stub.js "$stub_port" 2>"$work/stub.log" & pids+=($!)
node benches/baseline/blog-lambda.js "$lambda_port" "http://127.0.0.1:$stub_port" 2>"$work/lambda.log" & lambda=$!; pids+=($lambda)
wait_for "http://127.0.0.1:$lambda_port/"
measure baseline "http://127.0.0.1:$lambda_port" "$lambda" | tee "$work/results.jsonl"
kill "$lambda"

echo "==> chimewatch up: the whole pipeline (gateway, embedded log, aggregator, embedded store, archive)" >&2
up_port=$(free_port)
"$bin" up --listen "127.0.0.1:$up_port" --data-dir "$work/up" --log warn 2>"$work/up.log" & up=$!; pids+=($up)
wait_for "http://127.0.0.1:$up_port/healthz"
measure up "http://127.0.0.1:$up_port" "$up" | tee -a "$work/results.jsonl"
kill "$up"; wait "$up" 2>/dev/null || true

echo "==> chimewatch gateway against kinesalite ($shards shards)" >&2
node tests/node/kinesalite.js >"$work/kinesalite.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do kinesis=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$work/kinesalite.log" | head -1 || true); [ -n "$kinesis" ] && break; sleep 0.1; done
export AWS_ENDPOINT_URL_KINESIS=$kinesis AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
.venv/bin/python - "$kinesis" "$shards" <<'EOF'
import sys, boto3
kinesis = boto3.client("kinesis", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
kinesis.create_stream(StreamName="bench", ShardCount=int(sys.argv[2]))
kinesis.get_waiter("stream_exists").wait(StreamName="bench")
EOF
gateway_port=$(free_port)
"$bin" gateway --stream bench --listen "127.0.0.1:$gateway_port" --pipeline-metrics false --log warn 2>"$work/gateway.log" & gateway=$!; pids+=($gateway)
wait_for "http://127.0.0.1:$gateway_port/healthz"
measure gateway "http://127.0.0.1:$gateway_port" "$gateway" | tee -a "$work/results.jsonl"
curl -s "http://127.0.0.1:$gateway_port/metrics" >"$work/gateway-metrics.txt" || true
grep -E '^chimewatch_stream_(records|entries|requests|retries|throttles)_total ' "$work/gateway-metrics.txt" >&2 || true
# What a PutRecords call took, against what a put took from its arrival to durability (lingering and waiting
# included).
python3 benches/histogram.py "$work/gateway-metrics.txt" chimewatch_stream_call_latency_seconds \
  chimewatch_stream_put_latency_seconds >&2

# The medians, and the gateway's ratio to the baseline.
python3 - "$work/results.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda server, key: statistics.median(r[key] if not isinstance(r[key], dict) else 0 for r in rows if r["server"] == server)
lat = lambda server, q: statistics.median(r["latency_ms"][q] for r in rows if r["server"] == server)
base = med("baseline", "events_per_server_cpu_sec")
for server in ("baseline", "up", "gateway"):
    cpu = med(server, "events_per_server_cpu_sec")
    print(json.dumps({"server": server, "events_per_server_cpu_sec": cpu, "ratio": round(cpu / base, 2),
                      "events_per_sec": med(server, "events_per_sec"), "p50_ms": lat(server, "p50"),
                      "p99_ms": lat(server, "p99"), "rss_kib": med(server, "server_rss_kib"), "runs": sum(r["server"] == server for r in rows)}))
EOF
