#!/usr/bin/env bash
# The whole test suite: every crate's tests, then the Stripe conformance check over every Stripe
# request the tests recorded. Runs on a fresh machine with only Rust and Python 3 + pip (it installs
# Chromium and PostgreSQL with apt-get when they are missing).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

shared="$root/../shared"
record_dir="$root/target/stripe-requests"
rm -rf "$record_dir"
mkdir -p "$record_dir"

# The real-browser tests (tests/it/browser.rs and browser/actions.rs) drive Debian's Chromium
# through its chromedriver.
if [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing chromium and chromium-driver for the browser test" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
  else
    echo "the browser test needs Chromium and its driver: sudo apt-get install chromium chromium-driver" >&2
    exit 1
  fi
fi

# The PostgreSQL store runs the same store tests as SQLite against a real server started for them
# (scripts/with-postgres.sh: Debian's package, initdb in a temporary directory, stopped after).
"$root/scripts/with-postgres.sh" cargo test --workspace --locked --no-fail-fast

# Stripe conformance: the official SDK's parameter types are the oracle (../shared/stripe/SOURCE.md).
venv="$root/target/stripe-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import stripe, sys; sys.exit(stripe.VERSION != "16.1.0")' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'stripe==16.1.0'
fi
shopt -s nullglob
files=("$record_dir"/*.jsonl)
if [ ${#files[@]} -eq 0 ]; then
  echo "stripe conformance: no recorded Stripe requests under $record_dir" >&2
  exit 1
fi
cat "${files[@]}" > "$root/target/stripe-requests.jsonl"
count=$(wc -l < "$root/target/stripe-requests.jsonl")
echo "stripe conformance: checking $count recorded requests"
"$venv/bin/python" "$shared/stripe/conformance.py" "$root/target/stripe-requests.jsonl" --version 2026-10-28.endive
