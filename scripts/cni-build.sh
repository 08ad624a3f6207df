#!/usr/bin/env bash
# Builds the chained CNI plugin (cni/: one static binary, sluice-cni) once and prints the binary's path
# on stdout: <cache>/cni/<hash of go.mod, go.sum, sources, Go version>/sluice-cni, so later runs print
# it at once. Idempotent and safe to run concurrently. The image build copies the printed binary.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/cni"
GB_NAME=cni-build
. "$root/scripts/lib/go-build.sh"
gb_find_go "$(sed -n 's/^go //p' "$src/go.mod")"

build_cni() {
  gb_log "building sluice-cni"
  # Static (no libc): it runs on any node, from the CNI binary directory the agent installs it into.
  (cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=readonly GOTOOLCHAIN=local go build -trimpath -ldflags "-s -w" -o "$1/sluice-cni" .)
}

key="$(cd "$src" && { cat go.mod go.sum; for f in $(ls ./*.go | grep -v '_test\.go$' | LC_ALL=C sort); do echo "$f"; cat "$f"; done; echo "$GB_GO_VERSION"; cat "$root/scripts/cni-build.sh"; } | sha256sum | cut -c1-16)"
echo "$(gb_cached "$(gb_cache_root)/cni" "$key" sluice-cni build_cni)/sluice-cni"
