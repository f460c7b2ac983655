# Sourced by bench/http.sh and bench/instructions.sh: which binary runs, how a started server's address is
# read, and the seeding both measure against (the sandbox demo client's first key, one Binance sandbox
# connection through /api/v1/authenticate).

# Sets BIN: $LINKVAULT_BIN when given (to compare another build), else this tree's release build.
bench_binary() {
  BIN="${LINKVAULT_BIN:-}"
  if [ -z "$BIN" ]; then
    cargo build --release -p linkvault --quiet
    BIN="${CARGO_TARGET_DIR:-target}/release/linkvault"
  fi
}

# Prints the base URL a server started with `--listen 127.0.0.1:0` logged to $1, waiting up to $2 × 0.2 s;
# fails with the log on stderr if it never did.
bench_base_url() {
  local log=$1 tries=$2 base=""
  for _ in $(seq 1 "$tries"); do
    base=$(sed -n 's/^linkvault listening on \([^ ]*\).*/\1/p' "$log" | head -n 1)
    [ -n "$base" ] && break
    sleep 0.2
  done
  [ -n "$base" ] || { cat "$log" >&2; return 1; }
  echo "$base"
}

# Seeds the server at $2 whose data dir is $1: sets CLIENT_ID, CLIENT_SECRET and TOKEN (the connection's tokenId).
bench_seed() {
  local dir=$1 base=$2
  CLIENT_ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["clientId"])' "$dir/sandbox-client.json")
  CLIENT_SECRET=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["keys"][0]["secret"])' "$dir/sandbox-client.json")
  TOKEN=$(curl -sf -X POST "$base/api/v1/authenticate?userId=bench" -H "X-Client-Id: $CLIENT_ID" \
    -H "X-Client-Secret: $CLIENT_SECRET" \
    -d '{"type":"binanceInternationalDirect","username":"Mesh","password":"Pass123","mfaCode":"123456"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["content"]["accountTokens"][0]["tokenId"])')
}

# Sets WORK (a temporary dir) and SERVER_PID (empty), and on exit stops the server the script started last
# (SERVER_PID, when set) and removes WORK.
bench_workdir() {
  WORK=$(mktemp -d)
  SERVER_PID=""
  trap bench_cleanup EXIT
}
bench_cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
