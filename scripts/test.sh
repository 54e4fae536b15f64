#!/usr/bin/env bash
# Runs every check and test of chimewatch: formatting, clippy, unit, property, router and end-to-end tests.
# Installs what it needs (moto into .venv) and starts what it needs (moto on a free loopback port), then stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${CHIMEWATCH_VENV:-.venv}"
moto_version="5.2.5"

if ! "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$moto_version')" 2>/dev/null; then
  echo "==> installing moto $moto_version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "moto[kinesis,cloudwatch,logs,s3,dynamodb,server]==$moto_version" flask flask-cors
fi

workdir="$(mktemp -d)"
moto_pid=""
cleanup() {
  if [ -n "$moto_pid" ]; then kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; fi
  rm -rf "$workdir"
}
trap cleanup EXIT

echo "==> starting moto on a free port"
"$venv/bin/moto_server" -H 127.0.0.1 -p 0 >"$workdir/moto.log" 2>&1 &
moto_pid=$!
moto_url=""
for _ in $(seq 1 300); do
  moto_url="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$workdir/moto.log" | head -n 1 || true)"
  [ -n "$moto_url" ] && break
  kill -0 "$moto_pid" 2>/dev/null || { cat "$workdir/moto.log"; echo "moto exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$moto_url" ] || { cat "$workdir/moto.log"; echo "moto did not start within 30 s" >&2; exit 1; }
export CHIMEWATCH_TEST_MOTO_URL="$moto_url"
echo "    moto at $moto_url"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked
