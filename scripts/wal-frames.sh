#!/usr/bin/env bash
# Which tables and indexes a benchmark run's commits write: runs `BIN bench --plans N --parked 0
# --profiles zero` on a database of its own, copies the SQLite WAL every 20 ms while it runs,
# reads every distinct frame of every WAL generation from the copies (page number, commit marker,
# salt) and names each page's B-tree with SQLite's `dbstat` at the end. A development tool for
# docs/performance.md ("Where a commit's pages go"); needs the `sqlite3` shell (Debian's has
# `dbstat`) and Python 3.
#
# usage: scripts/wal-frames.sh BIN [PLANS] [SANDBOX]
set -euo pipefail
bin=$1
plans=${2:-300}
sandbox=${3:-$(dirname "$bin")/sandbox}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/copies"

"$bin" bench --plans "$plans" --parked 0 --profiles zero --sandbox-bin "$sandbox" --dir "$work/run" \
  > "$work/out" 2>&1 &
bench=$!
i=0
while kill -0 "$bench" 2>/dev/null; do
  wal="$work/run/zero/chairside.sqlite-wal"
  [ -f "$wal" ] && cp "$wal" "$work/copies/$i" 2>/dev/null || true
  i=$((i + 1))
  sleep 0.02
done
wait "$bench"
grep -E "CPU per external call|commits \(syncs\)|external calls per workflow" "$work/out"
sqlite3 "$work/run/zero/chairside.sqlite" "SELECT pageno, name FROM dbstat" > "$work/pages"

python3 - "$work" <<'PY'
import collections, glob, struct, sys

work = sys.argv[1]
names = {}
for line in open(f"{work}/pages"):
    page, name = line.rstrip("\n").split("|", 1)
    names[int(page)] = name
frames = {}
for path in glob.glob(f"{work}/copies/*"):
    data = open(path, "rb").read()
    if len(data) < 32:
        continue
    page_size = struct.unpack(">I", data[8:12])[0]
    salt = data[16:24]
    offset, index = 32, 0
    # A frame: page number, the database size after a commit (0 otherwise), the salt, checksums,
    # then the page. Frames past the last with this generation's salt are an older generation's.
    while offset + 24 + page_size <= len(data):
        page, commit = struct.unpack(">II", data[offset:offset + 8])
        if data[offset + 8:offset + 16] != salt:
            break
        frames[(salt, index)] = (page, commit)
        offset += 24 + page_size
        index += 1
commits = sum(1 for _, commit in frames.values() if commit)
print(f"frames {len(frames)} in {commits} commits: {len(frames) / max(commits, 1):.1f} per commit")
by_tree = collections.Counter(names.get(page, "?") for page, _ in frames.values())
for name, n in by_tree.most_common(16):
    print(f"{n:7d} {100 * n / len(frames):5.1f} %  {name}")
PY
