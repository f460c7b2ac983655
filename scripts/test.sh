#!/usr/bin/env bash
# The whole test suite: installs the JavaScript packages the conformance and browser tests drive (from the npm
# registry, pinned by their lock files), then runs every Rust test in the workspace.
# PostgreSQL tests run when LINKVAULT_TEST_DATABASE_URL is set (.ci/run sets it).
set -euo pipefail
cd "$(dirname "$0")/.."

for dir in tests/*/; do
  if [ -f "$dir/package-lock.json" ] && [ ! -d "$dir/node_modules" ]; then
    echo "installing npm packages in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done

if [ -n "${LINKVAULT_TEST_DATABASE_URL:-}" ]; then
  echo "PostgreSQL tests: enabled (LINKVAULT_TEST_DATABASE_URL is set)"
else
  echo "PostgreSQL tests: skipped (set LINKVAULT_TEST_DATABASE_URL=postgres://… to run them)"
fi

status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi

# JavaScript suites (Mesh's Node client, browser tests) drive the real `linkvault` binary.
cargo build -p linkvault --quiet || status=$?
for dir in tests/*/; do
  if ls "$dir"*.test.mjs >/dev/null 2>&1; then
    echo "running the JavaScript tests in $dir"
    node --test --test-concurrency=1 "$dir" || status=$?
  fi
done
exit "$status"
