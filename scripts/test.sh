#!/usr/bin/env bash
# The whole test suite: every crate's tests, then the Stripe conformance check over every Stripe
# request the tests recorded. Runs on a fresh machine with only Rust and Python 3 + pip.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

shared="$root/../shared"
record_dir="$root/target/stripe-requests"
rm -rf "$record_dir"
mkdir -p "$record_dir"

cargo test --workspace --locked

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
