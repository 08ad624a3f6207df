#!/usr/bin/env bash
# The whole suite: lint and type check, unit, kernel (BPF_PROG_RUN), lab e2e and integration
# (real kube-apiserver). Run by `npm test` after setup.sh; .ci/run runs exactly `npm test`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export PATH="$root/.tooling/node/bin:$root/.tooling/bin:$PATH"
bash scripts/lint.sh
# The real kube-apiserver for the integration tests, and the real cluster's other components (kubelet,
# controller manager, scheduler, containerd) and Sluice's image for test/cluster: built once per machine
# (minutes), then cached; one after the other, since a parallel Go build only adds memory on 2 cores.
bash scripts/apiserver-build.sh >/dev/null
bash scripts/cluster-build.sh >/dev/null
bash scripts/image-build.sh >/dev/null
shopt -s nullglob globstar
files=(test/unit/**/*.test.ts test/kernel/**/*.test.ts test/e2e/**/*.test.ts test/integration/**/*.test.ts test/cluster/**/*.test.ts)
# Kernel and lab tests share the host's bpffs and network namespaces: one file at a time. A file's
# process exits when its tests are done, so a handle a failed test left open cannot hang the run; its
# stdout made blocking first (test/support/blocking-stdout.ts), or that exit drops results unreported.
exec node --disable-warning=ExperimentalWarning --import ./test/support/blocking-stdout.ts --test --test-concurrency=1 --test-force-exit --test-reporter=spec "${files[@]}"
