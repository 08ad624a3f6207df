#!/usr/bin/env bash
# Builds test/apiserver (kube-apiserver + embedded etcd) once and prints the binary's path on stdout.
# The binary is cached under <cache>/apiserver/<hash of go.mod, go.sum, sources, Go version>/, so only
# the first run pays for the (slow) build; later runs print the path at once. Idempotent and safe to
# run concurrently. scripts/cluster-build.sh builds the cluster's other components from the same module.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/test/apiserver"
GB_NAME=apiserver-build
. "$root/scripts/lib/go-build.sh"
gb_find_go "$(sed -n 's/^go //p' "$src/go.mod")"

build_apiserver() {
  gb_log "building kube-apiserver + etcd (first run only; several minutes)"
  # -p 2 bounds parallel compiles (and memory) on small machines.
  (cd "$src" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go build -p 2 -trimpath -ldflags "$(gb_kube_ldflags "$src/go.mod")" -o "$1/sluice-apiserver" .)
}

key="$(cd "$src" && { cat go.mod go.sum; for f in $(ls ./*.go | LC_ALL=C sort); do cat "$f"; done; echo "$GB_GO_VERSION"; cat "$root/scripts/apiserver-build.sh"; } | sha256sum | cut -c1-16)"
echo "$(gb_cached "$(gb_cache_root)/apiserver" "$key" sluice-apiserver build_apiserver)/sluice-apiserver"
