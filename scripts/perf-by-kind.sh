#!/usr/bin/env bash
# Where Chairside's CPU goes by kind of work, from `perf` samples of one bench run: each sample
# of Chairside's threads (the runtime `chairside-rt`, the store's `chairside-store` writer and
# reader, sqlx's `sqlx-sqlite-wor`) is put in one kind: a system call by what it does (the WAL's
# writes, its syncs, loopback TCP, waking threads...), a page fault, an interrupt, else user
# space. Like `scripts/bench-pairs.sh`, it gives no figures for a run whose workflows did not all
# end where their personas say. Time, not instructions: the kernel's
# share, which `scripts/callgrind-per-call.sh` cannot see, is the point. The sandbox's threads
# (another process) are left out; the stack's start (before the bench's measured window) is a
# kind of its own. A kind needs only the kernel's frames and the first user frame (the system
# call's wrapper), which `perf record -g` gets without frame pointers; the stack's start is told
# by deeper frames, which a build without frame pointers may lose (it then counts as user space).
# A development tool; needs `perf` (Debian's `linux-perf`) and Python 3.
#
# usage: scripts/perf-by-kind.sh BIN [PLANS] [SANDBOX]
#   BIN      a `chairside` release build
#   PLANS    plans in the run (default 300, the bench's default size)
#   SANDBOX  the sandbox binary (default: the one next to BIN)
set -euo pipefail
if [ $# -lt 1 ]; then
  sed -n '15,18p' "$0" >&2
  exit 2
fi
bin=$1
plans=${2:-300}
sandbox=${3:-$(dirname "$bin")/sandbox}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

perf record -q -F 1999 -g -o "$out/perf.data" -- "$bin" bench --plans "$plans" --parked 0 \
  --profiles zero --sandbox-bin "$sandbox" --json > "$out/bench.json" 2> "$out/bench.log" || {
  echo "the bench failed; the end of its log:" >&2
  tail -n 20 "$out/bench.log" >&2
  exit 1
}
perf script -i "$out/perf.data" -F comm,ip,sym,dso 2> /dev/null > "$out/chains.txt"

python3 - "$out/chains.txt" "$out/bench.json" <<'PY'
import collections, json, re, sys

# A sample in a system call is put by the C library's wrapper that made it (the frame above
# the kernel's entry), or for the bare `syscall` wrapper (futexes, getrandom) by the kernel's
# function; any other sample by the first pattern found on its chain; else user space.
START = r"Stack::start_as|demo_config|hash_password"
SYSCALLS = [
    ("WAL sync (fdatasync)", r"fdatasync"),
    ("file writes (pwrite: WAL frames, checkpoints)", r"pwrite"),
    ("file reads (pread)", r"pread"),
    ("file locks (fcntl)", r"fcntl"),
    ("socket sends (loopback TCP: the receiving end's work too)", r"writev|send"),
    ("socket receives", r"recv"),
    ("waiting for events (epoll)", r"epoll"),
    ("connections (socket, connect, accept, close)",
     r"connect|accept|close|shutdown|socket|setsockopt|getsockopt|getpeername|getsockname"),
    ("memory mappings (mprotect, munmap, madvise)", r"mprotect|munmap|mmap|madvise|brk"),
]
KERNEL = [
    ("waking threads (futex)", r"\bdo_futex\b"),
    ("waking the runtime (eventfd)", r"\beventfd_write\b"),
    ("getrandom", r"get_random_bytes_user|__x64_sys_getrandom"),
]
OTHER = [
    ("page faults", r"\bexc_page_fault\b"),
    ("interrupts", r"common_interrupt|sysvec_|handle_softirqs"),
]
THREADS = ("chairside-rt", "chairside-store", "sqlx-sqlite-wor")


def kind_of(symbols):
    frames = " ".join(symbols)
    if re.search(START, frames):
        return "stack start (before the measured window)"
    entry = next((i for i, s in enumerate(symbols) if s.startswith("entry_SYSCALL_64")), None)
    if entry is not None:
        wrapper = symbols[entry + 1] if entry + 1 < len(symbols) else ""
        kernel = " ".join(symbols[:entry])
        if not wrapper.startswith("syscall"):
            for kind, pattern in SYSCALLS:
                if re.search(pattern, wrapper):
                    return kind
        for kind, pattern in KERNEL:
            if re.search(pattern, kernel):
                return kind
        return "other system calls"
    for kind, pattern in OTHER:
        if re.search(pattern, frames):
            return kind
    return "user space"


def symbol(line):
    """`ip symbol (dso)` -> (symbol, whether the kernel's)."""
    parts = line.strip().split(None, 1)
    rest = parts[1] if len(parts) > 1 else "?"
    kernel = rest.endswith("([kernel.kallsyms])")
    return re.sub(r" \([^()]*\)$", "", rest), kernel


samples = collections.Counter()
by_thread = collections.Counter()
for chain in open(sys.argv[1]).read().split("\n\n"):
    lines = chain.strip().split("\n")
    if not lines or not lines[0].strip():
        continue
    comm = lines[0].split()[0]
    if comm not in THREADS:
        continue
    frames = [symbol(line) for line in lines[1:]]
    symbols = [name for name, _ in frames]
    kind = kind_of(symbols)
    if kind == "user space" and frames and frames[0][1]:
        kind = "other kernel work"
    samples[(comm, kind)] += 1
    by_thread[comm] += 1

total = sum(by_thread.values())
text = open(sys.argv[2]).read()
run = json.loads(text[text.index("\n{") + 1:])["runs"][0]
if run["as_expected"] != run["workflows"]:
    sys.exit(f"{run['as_expected']} of {run['workflows']} workflows ended as expected: no figures")
print(f"{run['workflows']} plans, {run['external_calls']} external calls, "
      f"{run['chairside_cpu_per_external_call_ms']:.3f} ms of Chairside's CPU per call "
      f"(under perf); {total} samples of Chairside's threads")
for comm in THREADS:
    print(f"\n{comm}: {100 * by_thread[comm] / total:.1f} % of Chairside's samples")
    rows = sorted(((n, k) for (c, k), n in samples.items() if c == comm), reverse=True)
    for n, k in rows:
        print(f"  {100 * n / total:5.1f} %  {k}")
print("\nall threads, by kind:")
kinds = collections.Counter()
for (c, k), n in samples.items():
    kinds[k] += n
for k, n in kinds.most_common():
    print(f"  {100 * n / total:5.1f} %  {k}")
PY
