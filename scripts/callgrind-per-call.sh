#!/usr/bin/env bash
# Instructions per external call, counted by valgrind's callgrind rather than timed: the same
# binary gives the same figure within about 1.5 % whatever the host is doing, where the bench's
# CPU time per call moves by half from one hour to the next on a shared machine
# (docs/performance.md, "Instructions per call, counted"). Runs `BIN bench --plans N --parked 0
# --profiles zero` under callgrind at two sizes and divides the difference in instructions by the
# difference in external calls, so the start-up (migrations, the demo configuration's password
# hash, the sandbox's start) drops out. The practice systems are polled once per run
# (`--pms-poll-ms` an hour: the first poll finds every plan): polled every second, a run that
# callgrind slows ten- to thirtyfold would count a number of polls that depends on how long it
# lasted, not on the build. Counts user-space instructions of the bench process (the
# sandbox is not traced): not the kernel's work (the WAL's writes and syncs, the sockets), not
# cycles. A development tool; needs valgrind (Debian's package) and Python 3.
#
# usage: scripts/callgrind-per-call.sh BIN [SANDBOX] [SMALL] [LARGE]
#   keeps each run's profile in $CALLGRIND_OUT (default: a temporary directory, removed) for
#   `callgrind_annotate`.
set -euo pipefail
bin=$1
sandbox=${2:-$(dirname "$bin")/sandbox}
small=${3:-24}
large=${4:-96}
out=${CALLGRIND_OUT:-}
if [ -z "$out" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"

run() {
  local plans=$1
  valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.$plans" \
    "$bin" bench --plans "$plans" --parked 0 --profiles zero --pms-poll-ms 3600000 \
    --sandbox-bin "$sandbox" --json \
    > "$out/bench.$plans.json" 2> "$out/valgrind.$plans.log"
}
run "$small"
run "$large"

python3 - "$out" "$small" "$large" <<'PY'
import json, re, sys

out, small, large = sys.argv[1], sys.argv[2], sys.argv[3]

def figures(plans):
    log = open(f"{out}/valgrind.{plans}.log").read()
    instructions = int(re.findall(r"Collected : (\d+)", log)[-1])
    text = open(f"{out}/bench.{plans}.json").read()
    bench = json.loads(text[text.index("\n{") + 1:])
    run = bench["runs"][0]
    if run["as_expected"] != run["workflows"]:
        sys.exit(f"{plans} plans: {run['as_expected']} of {run['workflows']} ended as expected")
    return instructions, run["external_calls"], run["poll_calls"]

(i1, c1, p1), (i2, c2, p2) = figures(small), figures(large)
print(f"{small} plans: {i1:,} instructions, {c1} external calls ({p1} practice polls)")
print(f"{large} plans: {i2:,} instructions, {c2} external calls ({p2} practice polls)")
print(f"instructions per external call (difference): {(i2 - i1) / (c2 - c1):,.0f}")
PY
