#!/usr/bin/env bash
# Paired raw -> ready runs of two revisions, to tell a real change in speed from the machine's noise:
#   benchmarks/compare_revisions.sh OLD_REV [NEW_REV (default HEAD)] [PAIRS (default 6)] [EVENTS (default 200000)]
# Each revision gets a git worktree and its own ./scripts/setup under ${TMPDIR:-/tmp}; then
# bench_pipeline runs once per revision per pair (raw -> ready only, a broker per invocation), the
# order alternating between pairs so that a drift in the machine's load hits both alike. Prints each
# run and, at the end, the median rates and the median of the per-pair NEW/OLD ratios. Writes nothing
# into docs/: copy the figures by hand, with this command line.
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: $0 OLD_REV [NEW_REV] [PAIRS] [EVENTS]}
new=${2:-HEAD}
pairs=${3:-6}
events=${4:-200000}
root=${TMPDIR:-/tmp}/vaxflow-compare
mkdir -p "$root"
tree() {
  local rev dir
  rev=$(git rev-parse --short "$1")
  dir="$root/$rev"
  if [ ! -d "$dir" ]; then
    git worktree add -f --detach "$dir" "$rev" >/dev/null
  fi
  (cd "$dir" && ./scripts/setup >/dev/null 2>&1) || { echo "setup of $rev failed" >&2; exit 1; }
  echo "$dir"
}
old_dir=$(tree "$old")
new_dir=$(tree "$new")
log=$(mktemp)
for pair in $(seq 1 "$pairs"); do
  if [ $((pair % 2)) -eq 1 ]; then order="old new"; else order="new old"; fi
  for which in $order; do
    dir=$old_dir; [ "$which" = new ] && dir=$new_dir
    rate=$(cd "$dir" && .venv/bin/python -m benchmarks.bench_pipeline --events "$events" --runs 1 \
      --warmup-events 30000 --no-mesh --no-python-baseline --no-passthrough 2>/dev/null \
      | sed -n 's/^run 1: raw -> ready \([0-9,]*\) events\/s.*/\1/p' | tr -d ,)
    git -C "$dir" checkout -q -- docs  # bench_pipeline rewrites its section of docs/benchmarks.md
    echo "pair $pair $which ${rate:-failed} events/s" | tee -a "$log"
  done
done
python3 - "$log" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    _, pair, which, rate, _ = line.split()
    runs.setdefault(int(pair), {})[which] = float(rate)
old = [r["old"] for r in runs.values()]
new = [r["new"] for r in runs.values()]
ratios = sorted(r["new"] / r["old"] for r in runs.values())
print(f"median events/s: old {statistics.median(old):,.0f}, new {statistics.median(new):,.0f}; "
      f"new/old per pair {', '.join(f'{x:.3f}' for x in ratios)}; median {statistics.median(ratios):.3f}")
PY
rm -f "$log"
