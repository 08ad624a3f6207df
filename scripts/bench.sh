#!/usr/bin/env bash
# Runs every benchmark in test/bench (*.bench.ts, in name order); each prints a markdown table with a
# baseline measured in the same run. Kernel benchmarks need root. Run by `npm run bench` after setup.sh;
# not part of `npm test`. scale.bench.ts (test/scale: 50,000 pods on a real API server) takes about half
# an hour; BENCH_SKIP_SCALE=1 leaves it out.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export PATH="$root/.tooling/node/bin:$root/.tooling/bin:$PATH"
make -C bpf >/dev/null
shopt -s nullglob
status=0
for f in test/bench/*.bench.ts; do
  if [[ "$f" == test/bench/scale.bench.ts && "${BENCH_SKIP_SCALE:-}" == 1 ]]; then continue; fi
  echo "## $f"
  if ! node --expose-gc --disable-warning=ExperimentalWarning "$f"; then
    echo "$f: FAILED" >&2
    status=1
  fi
  echo
done
exit $status
