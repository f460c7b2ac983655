#!/usr/bin/env bash
# OpenAPI-driven fuzzing: schemathesis (pinned in tests/fuzz/requirements.txt, installed from PyPI into the
# ignored venv tests/fuzz/.venv) against a real `linkvault serve --sandbox` on loopback, driven by the
# /openapi.json the server itself serves, authenticated as the sandbox demo client's write key.
# Checks: no 5xx, and every response conforms to the document (status code, content type, body schema).
# Bounds: FUZZ_MAX_EXAMPLES (default 100) generated cases per operation in the fuzzing phase, on top of the
# documented examples and the boundary ("coverage") cases; the report prints cases per operation and the time.
# Usage: ./scripts/fuzz.sh [extra schemathesis options]; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

max_examples="${FUZZ_MAX_EXAMPLES:-100}"
seed="${FUZZ_SEED:-}"
venv=tests/fuzz/.venv
started=$(date +%s)

# The venv is rebuilt when the pinned requirements change (a stamp holds their digest).
want=$(sha256sum tests/fuzz/requirements.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/st" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  echo "fuzz: installing schemathesis into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r tests/fuzz/requirements.txt
  echo "$want" >"$venv/.requirements.sha256"
fi

cargo build -p linkvault --quiet
bin="${CARGO_TARGET_DIR:-target}/debug/linkvault"

# Reports (the NDJSON event log and the JUnit XML) are kept in target/fuzz for inspection after a run.
reports="${CARGO_TARGET_DIR:-target}/fuzz"
mkdir -p "$reports"
work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A fresh data dir (generated master key, SQLite) and a free port. The per-client API rate limit is off: the
# fuzzer is one client sending as fast as it can, and the limiter is tested on its own (rate_limits.rs).
LINKVAULT_API_RATE_LIMIT=0 RUST_LOG=warn \
  "$bin" --data-dir "$work/data" serve --sandbox --listen 127.0.0.1:0 >"$work/server.log" 2>&1 &
server_pid=$!

base=""
for _ in $(seq 1 150); do
  base=$(sed -n 's/^linkvault listening on \(http:\/\/[^ ]*\).*/\1/p' "$work/server.log" | head -n 1)
  [ -n "$base" ] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.2
done
if [ -z "$base" ]; then
  echo "fuzz: the server did not start:"
  cat "$work/server.log"
  exit 1
fi

client_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["clientId"])' "$work/data/sandbox-client.json")
write_key=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(next(k["secret"] for k in d["keys"] if k["scope"]=="write"))' "$work/data/sandbox-client.json")

# One live sandbox connection (Binance-like sign-in with its MFA code), whose tokenId tests/fuzz/hooks.py puts
# into about half of the generated tokenId slots, so the token-backed answers are checked too, not only the
# refusals of unknown ids.
token_id=$(python3 - "$base" "$client_id" "$write_key" <<'PY'
import json, sys, urllib.request
base, client, secret = sys.argv[1:4]
body = {"type": "binanceInternationalDirect", "username": "Mesh", "password": "Pass123", "mfaCode": "123456"}
request = urllib.request.Request(f"{base}/api/v1/authenticate?userId=fuzz-user", data=json.dumps(body).encode(),
                                 headers={"X-Client-Id": client, "X-Client-Secret": secret,
                                          "Content-Type": "application/json"}, method="POST")
with urllib.request.urlopen(request, timeout=20) as answer:
    print(json.load(answer)["content"]["accountTokens"][0]["tokenId"])
PY
)
echo "fuzz: connected sandbox account $token_id"

echo "fuzz: schemathesis $("$venv/bin/st" --version | awk '{print $NF}') against $base/openapi.json, up to $max_examples generated cases per operation"
status=0
FUZZ_TOKEN_ID="$token_id" PYTHONPATH=tests/fuzz SCHEMATHESIS_HOOKS=hooks \
  "$venv/bin/st" run "$base/openapi.json" \
    --url "$base" \
    --header "X-Client-Id: $client_id" \
    --header "X-Client-Secret: $write_key" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --phases examples,coverage,fuzzing \
    --max-examples "$max_examples" \
    ${seed:+--seed "$seed"} \
    --workers 2 \
    --request-timeout 20 \
    --generation-database none \
    --no-color \
    --report ndjson,junit --report-ndjson-path "$reports/events.ndjson" --report-junit-path "$reports/junit.xml" \
    "$@" || status=$?

python3 tests/fuzz/summary.py "$reports/events.ndjson" "$started" || status=$?
if [ "$status" -ne 0 ]; then
  echo "fuzz: FAILED (schemathesis exit $status); server log tail:"
  tail -n 40 "$work/server.log"
fi
exit "$status"
