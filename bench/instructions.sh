#!/usr/bin/env bash
# User-space instructions per request of the real server, counted by valgrind's callgrind: a figure that does
# not depend on the machine's load (unlike bench/http.sh's req/s), for before/after comparisons of one change.
#
#   bench/instructions.sh                    # SQLite, 2,000 requests per route
#   INSTR_REQUESTS=5000 bench/instructions.sh
#   INSTR_OUT=/tmp/cg bench/instructions.sh  # keep the callgrind dumps there (default target/instructions)
#   LINKVAULT_BIN=/path/to/linkvault bench/instructions.sh   # that binary instead of building this tree's
#
# The release server runs under `valgrind --tool=callgrind` with one runtime worker and the API rate limit off,
# seeded as bench/http.sh seeds it (the sandbox demo client's key, one Binance sandbox connection through
# /api/v1/authenticate). A one-connection keep-alive client (Python's http.client, outside valgrind) sends
# warm-up requests, then N of `GET /livez` and N of `GET /api/v1/tokens/{id}`; the counters are zeroed
# before and dumped after each phase (`callgrind_control`), every thread of the process included. The
# process also runs timers while it serves (the SQLite snapshot sweeper every 10 ms, the refresh scheduler's
# and webhook deliverer's polls), whose cost grows with wall time, not with requests: an idle phase measures
# that rate and each phase's share of it is subtracted. Repeated runs agree within a few tenths of a percent.
# valgrind hides the CPU features it does not emulate (SHA extensions among them), so `ring` takes its generic
# code paths here: compare figures from this script with each other, not with a profile of the native binary.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "install valgrind (apt-get install -y valgrind)"; exit 1; }
N="${INSTR_REQUESTS:-2000}"
WARMUP="${INSTR_WARMUP:-300}"
OUT="${INSTR_OUT:-${CARGO_TARGET_DIR:-target}/instructions}"
. bench/lib.sh
bench_binary
bench_workdir
mkdir -p "$OUT"
rm -f "$OUT"/callgrind.out.*

# Sends N requests on one keep-alive connection; fails on anything but 200. Prints the wall seconds taken.
cat > "$WORK/client.py" <<'PY'
import http.client, sys, time, urllib.parse
base, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
headers = dict(h.split(": ", 1) for h in sys.argv[4:])
u = urllib.parse.urlsplit(base)
conn = http.client.HTTPConnection(u.hostname, u.port)
started = time.monotonic()
for _ in range(n):
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"{path}: HTTP {r.status}: {body[:200]!r}")
print(f"{time.monotonic() - started:.3f}")
PY

dir="$WORK/data"
mkdir -p "$dir"
TOKIO_WORKER_THREADS=1 LINKVAULT_LOG=warn LINKVAULT_API_RATE_LIMIT=0 \
  valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out.%p" \
  "$BIN" --data-dir "$dir" serve --sandbox --listen 127.0.0.1:0 > "$WORK/out.log" 2>&1 &
SERVER_PID=$!
# valgrind starts the binary far slower than it runs natively: up to two minutes.
base=$(bench_base_url "$WORK/out.log" 600) || exit 1
bench_seed "$dir" "$base"
token=$TOKEN
AUTH=("X-Client-Id: $CLIENT_ID" "X-Client-Secret: $CLIENT_SECRET")

python3 "$WORK/client.py" "$base" /livez "$WARMUP" > /dev/null
python3 "$WORK/client.py" "$base" "/api/v1/tokens/$token" "$WARMUP" "${AUTH[@]}" > /dev/null

# `callgrind_control -d` dumps and zeroes; the dump numbers follow the order of the phases.
phase() {
  local name=$1
  shift
  callgrind_control -z "$SERVER_PID" > /dev/null 2>&1
  local secs
  if [ "$1" = idle ]; then
    sleep "$2"
    secs=$2
  else
    secs=$(python3 "$WORK/client.py" "$base" "$@")
  fi
  callgrind_control -d "$name" "$SERVER_PID" > /dev/null 2>&1
  echo "$secs"
}
total() { # the instruction total of the newest dump
  local f
  f=$(ls -t "$OUT"/callgrind.out."$SERVER_PID".* | head -n 1)
  awk '/^(summary|totals):/ {print $2; exit}' "$f"
}
t_live=$(phase livez /livez "$N"); ir_live=$(total)
t_res=$(phase resolve "/api/v1/tokens/$token" "$N" "${AUTH[@]}"); ir_res=$(total)
t_idle=$(phase idle idle "$(echo "$t_live $t_res" | awk '{print ($1 > $2 ? $1 : $2)}')"); ir_idle=$(total)
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""

per_request() { echo "$1 $2 $3 $4 $N" | awk '{printf "%.0f", ($1 - $2 / $4 * $3) / $5}'; }
live=$(per_request "$ir_live" "$ir_idle" "$t_live" "$t_idle")
res=$(per_request "$ir_res" "$ir_idle" "$t_res" "$t_idle")
echo "callgrind, $N requests per route on one keep-alive connection; dumps in $OUT"
echo "idle: $(echo "$ir_idle $t_idle" | awk '{printf "%.0f", $1 / $2}') instructions/s (subtracted per phase)"
echo
echo "| route | instructions/request | raw (with idle share) |"
echo "|---|---|---|"
echo "| GET /livez | $live | $(echo "$ir_live $N" | awk '{printf "%.0f", $1 / $2}') |"
echo "| GET /api/v1/tokens/{id} | $res | $(echo "$ir_res $N" | awk '{printf "%.0f", $1 / $2}') |"
echo "| resolve − livez | $((res - live)) | |"
