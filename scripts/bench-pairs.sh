#!/usr/bin/env bash
# Chairside's CPU per external call of two builds, timed in interleaved pairs: A then B, N times,
# at zero latency. On this shared VM the same binary reads half or twice as much from one hour to
# the next (docs/performance.md, "The host twice as fast within the hour"), so two builds are only
# compared run against run, in turn, the machine otherwise idle; a difference under the pairs'
# spread is not a finding. For a figure that does not move with the host, count instructions
# (scripts/callgrind-per-call.sh). A development tool; needs Python 3.
#
# usage: scripts/bench-pairs.sh A B [N] [PLANS] [SANDBOX] [SANDBOX_B]
#   A, B       two `chairside` binaries (release builds)
#   N          pairs (default 10); PLANS plans per run (default 300, the bench's default size)
#   SANDBOX    the sandbox binary (default: the one next to A)
#   SANDBOX_B  B's sandbox, for a build whose sandbox differs from A's (default: SANDBOX)
# Prints each pair as it runs, then per build the mean, median and range, the runs at or under
# issue #19's 0.5 ms, and in how many pairs B read lower than A. The figure is Chairside's own
# CPU per external call; a build older than that figure (commit 13f096e, 2 December 2026)
# reports only the whole process's (the bench's own threads counted in), and then both builds are
# read by the whole process's. Either way it ends with A's figure over B's, pair by pair. Every
# run must end with every workflow where its persona says, or the script stops.
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '9,19p' "$0" >&2
  exit 2
fi
a=$1
b=$2
pairs=${3:-10}
plans=${4:-300}
sandbox=${5:-$(dirname "$a")/sandbox}
sandbox_b=${6:-$sandbox}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# One run of build $1 with sandbox $2; prints its own CPU per external call ("-" when the build
# does not report it) and its whole process's, or says why there are none and fails.
run() {
  if ! "$1" bench --plans "$plans" --parked 0 --profiles zero --sandbox-bin "$2" --json \
    > "$out/run.json" 2> "$out/run.log"; then
    echo "$1 bench failed; the end of its log:" >&2
    tail -n 20 "$out/run.log" >&2
    return 1
  fi
  python3 - "$out/run.json" "$1" <<'PY'
import json, sys

text = open(sys.argv[1]).read()
run = json.loads(text[text.index("\n{") + 1:])["runs"][0]
if run["as_expected"] != run["workflows"]:
    sys.exit(f"{sys.argv[2]}: {run['as_expected']} of {run['workflows']} workflows ended as expected")
own = run.get("chairside_cpu_per_external_call_ms")
print("-" if own is None else f"{own:.3f}", f"{run['cpu_per_external_call_ms']:.3f}")
PY
}

: > "$out/pairs"
for i in $(seq 1 "$pairs"); do
  x=$(run "$a" "$sandbox")
  y=$(run "$b" "$sandbox_b")
  read -r xo xp <<< "$x"
  read -r yo yp <<< "$y"
  echo "$(date -u +%H:%M:%S) pair $i: A $xo ms (process $xp), B $yo ms (process $yp)"
  echo "$xo $yo $xp $yp" >> "$out/pairs"
done

python3 - "$out/pairs" "$a" "$b" <<'PY'
import statistics, sys

lines = [line.split() for line in open(sys.argv[1])]
# Chairside's own CPU when both builds report it, else the whole process's for both.
own = all("-" not in line[:2] for line in lines)
what = "Chairside's own CPU per call" if own else "the whole process's CPU per call"
rows = [tuple(map(float, line[:2] if own else line[2:])) for line in lines]
print(f"read by {what}:")
for column, name in enumerate(("A", "B")):
    values = [row[column] for row in rows]
    print(
        f"{name} ({sys.argv[2 + column]}): mean {statistics.mean(values):.3f} ms, "
        f"median {statistics.median(values):.3f}, {min(values):.3f} to {max(values):.3f}; "
        f"{sum(v <= 0.5 for v in values)} of {len(values)} runs at or under 0.5 ms"
    )
a = statistics.mean(row[0] for row in rows)
b = statistics.mean(row[1] for row in rows)
lower = sum(row[1] < row[0] for row in rows)
ratios = sorted(row[0] / row[1] for row in rows)
print(f"B against A: {100 * (b - a) / a:+.1f} % in the means, lower in {lower} of {len(rows)} pairs")
print(
    f"A's per B's, pair by pair: median {statistics.median(ratios):.2f} times, "
    f"{ratios[0]:.2f} to {ratios[-1]:.2f}"
)
PY
