#!/usr/bin/env bash
# Runs every check and test of chimewatch: formatting, clippy, unit, property, router and end-to-end tests.
# Installs what it needs (moto into .venv, the Node tools, Chromium) and starts what it needs (moto, the CloudWatch bridge and
# kinesalite on free loopback ports), then stops them.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${CHIMEWATCH_VENV:-.venv}"
moto_version="5.2.5"
duckdb_version="2.0.0"

if ! "$venv/bin/python" -c "import cbor2, duckdb, moto, sys; sys.exit(moto.__version__ != '$moto_version' or duckdb.__version__ != '$duckdb_version')" 2>/dev/null; then
  echo "==> installing moto $moto_version, cbor2 (for the CloudWatch bridge) and DuckDB $duckdb_version (to read the archive) into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "moto[kinesis,cloudwatch,logs,s3,dynamodb,cloudformation,server]==$moto_version" flask flask-cors cbor2 "duckdb==$duckdb_version"
fi
# The archive tests read Parquet back with DuckDB, a reader independent of the one that wrote it.
case "$venv" in /*) venv_abs="$venv" ;; *) venv_abs="$PWD/$venv" ;; esac
export CHIMEWATCH_TEST_PYTHON="$venv_abs/bin/python"

# Node tools, pinned in package.json: the real Amazon Chime SDK for JavaScript (driven by the real-client test) and
# kinesalite (the resharding test: unlike moto, it routes records to the child shards after a split).
node_dir="tests/node"
node_installed() {
  python3 - "$node_dir" <<'PY'
import json, sys
d = sys.argv[1]
want = json.load(open(f"{d}/package.json"))["dependencies"]
try:
    ok = all(json.load(open(f"{d}/node_modules/{m}/package.json"))["version"] == v for m, v in want.items())
except OSError:
    ok = False
sys.exit(0 if ok else 1)
PY
}
if ! node_installed; then
  echo "==> installing the Node test tools (amazon-chime-sdk-js, kinesalite)"
  npm install --prefix "$node_dir" --no-package-lock --no-audit --no-fund --loglevel=error >/dev/null
fi

# Debian's Chromium, for the console test (driven by playwright-core from the Node tools above).
if ! command -v chromium >/dev/null 2>&1; then
  echo "==> installing Debian's chromium (the console test opens the dashboards in it)"
  if [ "$(id -u)" = 0 ]; then apt_get=(apt-get); else apt_get=(sudo apt-get); fi
  export DEBIAN_FRONTEND=noninteractive
  "${apt_get[@]}" install -y --no-install-recommends chromium >/dev/null 2>&1 \
    || { "${apt_get[@]}" update >/dev/null && "${apt_get[@]}" install -y --no-install-recommends chromium >/dev/null; }
fi
export CHROMIUM="$(command -v chromium)"

workdir="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$workdir"
}
trap cleanup EXIT

# Starts a server in the background and sets server_url to the loopback URL it announces on its output.
start_server() {
  local name="$1"; shift
  "$@" >"$workdir/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  server_url=""
  for _ in $(seq 1 300); do
    server_url="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$workdir/$name.log" | head -n 1 || true)"
    [ -n "$server_url" ] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$workdir/$name.log" >&2
  echo "$name did not start within 30 s" >&2
  exit 1
}

echo "==> starting moto, the CloudWatch CBOR bridge in front of it, and kinesalite, on free ports"
start_server moto "$venv/bin/moto_server" -H 127.0.0.1 -p 0
moto_url="$server_url"
start_server bridge "$venv/bin/python" scripts/cloudwatch_cbor_bridge.py "$moto_url"
bridge_url="$server_url"
start_server kinesalite node "$node_dir/kinesalite.js"
kinesalite_url="$server_url"
export CHIMEWATCH_TEST_MOTO_URL="$moto_url" CHIMEWATCH_TEST_CLOUDWATCH_URL="$bridge_url"
export CHIMEWATCH_TEST_KINESALITE_URL="$kinesalite_url"
echo "    moto at $moto_url, CloudWatch (CBOR) at $bridge_url, kinesalite at $kinesalite_url"

echo "==> the test harness's own checks: the strict CloudWatch bridge and the fault-injecting proxy"
"$venv/bin/python" scripts/test_cloudwatch_cbor_bridge.py "$moto_url" > "$workdir/bridge-test.log" 2>&1 \
  || { cat "$workdir/bridge-test.log" >&2; exit 1; }
start_server proxy-self-test "$venv/bin/python" scripts/fault_proxy.py "$moto_url"
"$venv/bin/python" scripts/test_fault_proxy.py "$server_url" > "$workdir/proxy-test.log" 2>&1 \
  || { cat "$workdir/proxy-test.log" >&2; exit 1; }
tail -n 1 "$workdir/bridge-test.log" "$workdir/proxy-test.log" | sed -n '/passed\|ok/p'

# The deployment, offline: the rendered CloudFormation template, cfn-lint and checkov on it and on the Dockerfile.
bash scripts/check_deploy.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy (the sans-IO crates also under clippy.sans-io.toml: no clocks, files, sockets)"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The house's tools, pinned; installed from crates.io when missing.
cargo_tool() {
  local tool="$1" version="$2"
  if ! "cargo-$tool" --version 2>/dev/null | grep -q " $version\b"; then
    echo "==> installing cargo-$tool $version"
    cargo install --locked --quiet "cargo-$tool@$version"
  fi
}
cargo_tool deny 0.20.2
cargo_tool machete 0.9.2
cargo_tool fuzz 0.13.2

echo "==> the sans-IO crates depend on no runtime, network or storage crate"
for crate in chimewatch-model chimewatch-sip chimewatch-metrics; do
  if cargo tree --locked -p "$crate" -e normal --prefix none | grep -E '^(tokio|hyper|axum|reqwest|rusqlite|aws-[a-z-]+) '; then
    echo "$crate depends on the crates above; it must stay sans-IO (ARCHITECTURE.md)" >&2
    exit 1
  fi
done
echo "==> cargo deny: licenses, sources, and which crates may use the AWS SDKs and SQLite"
cargo deny --locked check bans licenses sources
# The advisory database is fetched from github.com, which not every machine reaches.
if git ls-remote --exit-code https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
  cargo deny --locked check advisories
else
  echo "    (advisories not checked: github.com, where the RustSec database lives, is unreachable from here)"
fi
echo "==> cargo machete: no unused dependencies"
cargo machete
echo "==> cargo test"
cargo test --workspace --locked 2>&1 | tee "$workdir/test.log"
# cargo's last lines are the (empty) doc-test summaries; close with the total over every test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$workdir/test.log"

# The parsers of what clients send, fuzzed for a bounded time (coverage-guided, libFuzzer). cargo-fuzz needs
# nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain take them for this build only. Longer runs:
# RELIABILITY.md, "Fuzzing".
fuzz_seconds="${CHIMEWATCH_FUZZ_SECONDS:-20}"
echo "==> fuzzing each parser for ${fuzz_seconds}s"
for target in meeting_batch client_events sip_records sip_message stream_record; do
  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" --target-dir "$PWD/target" -- \
    -max_total_time="$fuzz_seconds" -seed=1 -print_final_stats=1) > "$workdir/fuzz-$target.log" 2>&1 \
    || { tail -n 40 "$workdir/fuzz-$target.log" >&2; echo "fuzzing $target found a failure" >&2; exit 1; }
  echo "    $target: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$workdir/fuzz-$target.log" | grep -o '[0-9]*$') inputs, no failure"
done
