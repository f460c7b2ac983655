#!/usr/bin/env bash
# HTTP benchmark of the real server with wrk (Debian package `wrk`) from a separate process.
#
#   bench/http.sh            # SQLite, and PostgreSQL when LINKVAULT_TEST_DATABASE_URL is set
#   BENCH_SECS=10 bench/http.sh
#   LINKVAULT_BIN=/path/to/linkvault bench/http.sh   # that binary instead of building this tree's (A/B runs)
#
# One run measures, on the same server: GET /livez (hello world: no database, no auth), GET /api/v1/tokens/{id}
# (the tokenId resolve path: authenticate the client, load the connection, check ownership, answer) and
# POST /api/v1/holdings/get (resolve + decrypt + a call to the in-process sandbox exchange), each as a ratio to
# /livez. The server is pinned to CPU 0 with one runtime worker; wrk runs on CPU 1.
# The per-client API rate limit is off (`LINKVAULT_API_RATE_LIMIT=0`): wrk sends far more than 6,000 a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "install wrk (apt-get install -y wrk)"; exit 1; }
SECS="${BENCH_SECS:-10}"
CONNS="${BENCH_CONNECTIONS:-32}"
. bench/lib.sh
bench_binary
bench_workdir

cat > "$WORK/holdings.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("HOLDINGS_BODY")
LUA

rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
p99() { awk '/ 99%/ {print $2}' "$1"; }

run_backend() {
  local name=$1 url=$2 dir="$WORK/$1"
  mkdir -p "$dir"
  local args=(--data-dir "$dir")
  [ -n "$url" ] && args+=(--database-url "$url")
  TOKIO_WORKER_THREADS=1 LINKVAULT_LOG=warn LINKVAULT_API_RATE_LIMIT=0 taskset -c 0 "$BIN" "${args[@]}" serve --sandbox --listen 127.0.0.1:0 > "$dir/out.log" 2>&1 &
  SERVER_PID=$!
  local base
  base=$(bench_base_url "$dir/out.log" 50) || exit 1
  bench_seed "$dir" "$base"
  local token=$TOKEN H=(-H "X-Client-Id: $CLIENT_ID" -H "X-Client-Secret: $CLIENT_SECRET")
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "$base/livez" > "$dir/hello.txt"
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "${H[@]}" "$base/api/v1/tokens/$token" > "$dir/resolve.txt"
  HOLDINGS_BODY="{\"authToken\":\"$token\",\"type\":\"binanceInternationalDirect\"}" \
    taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$WORK/holdings.lua" "${H[@]}" "$base/api/v1/holdings/get" > "$dir/holdings.txt"
  for f in hello resolve holdings; do
    if grep -q "Non-2xx" "$dir/$f.txt"; then echo "$name $f: non-2xx answers:"; cat "$dir/$f.txt"; exit 1; fi
  done
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
  local h r o
  h=$(rps "$dir/hello.txt"); r=$(rps "$dir/resolve.txt"); o=$(rps "$dir/holdings.txt")
  printf '| %s | %.0f (p99 %s) | %.0f (p99 %s) | %.2f× | %.0f (p99 %s) | %.2f× |\n' "$name" "$h" "$(p99 "$dir/hello.txt")" \
    "$r" "$(p99 "$dir/resolve.txt")" "$(echo "$r / $h" | bc -l)" "$o" "$(p99 "$dir/holdings.txt")" "$(echo "$o / $h" | bc -l)"
}

echo "wrk: 1 thread, $CONNS connections, ${SECS}s per route; server: 1 worker on CPU 0; wrk on CPU 1"
echo
echo "| backend | GET /livez req/s | GET /api/v1/tokens/{id} req/s | resolve / hello | POST holdings/get req/s | holdings / hello |"
echo "|---|---|---|---|---|---|"
run_backend SQLite ""
if [ -n "${LINKVAULT_TEST_DATABASE_URL:-}" ]; then
  schema="lv_bench_$$"
  psql "$LINKVAULT_TEST_DATABASE_URL" -qc "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema"
  run_backend PostgreSQL "${LINKVAULT_TEST_DATABASE_URL}?options=-csearch_path%3D$schema"
  psql "$LINKVAULT_TEST_DATABASE_URL" -qc "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $schema CASCADE"
fi
