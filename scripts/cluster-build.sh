#!/usr/bin/env bash
# Builds the node and control-plane components of the test cluster (test/cluster) once and prints the
# directory that holds them on stdout:
#   sluice-kube                         kubelet, kube-controller-manager, kube-scheduler in one binary, from
#                                       test/apiserver's module (the same Kubernetes release as the API server)
#   containerd, containerd-shim-runc-v2, ctr   containerd from its Go module (CONTAINERD_VERSION)
# runc and the CNI plugins come from Debian (scripts/setup.sh). Cached like the API server, under
# <cache>/cluster/<hash of the inputs>/; safe to run concurrently. Builds one after the other: on 2
# cores a parallel build only adds memory.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/test/apiserver"
# containerd 2.4 still runs on cgroup v1 hosts (these machines); later releases drop it, so it is pinned.
CONTAINERD_VERSION=v2.4.2
GB_NAME=cluster-build
. "$root/scripts/lib/go-build.sh"
gb_find_go "$(sed -n 's/^go //p' "$src/go.mod")"

build_cluster() {
  local out="$1" gobin
  gb_log "building kubelet, kube-controller-manager, kube-scheduler (first run only; several minutes)"
  (cd "$src" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go build -p 2 -trimpath -ldflags "$(gb_kube_ldflags "$src/go.mod")" -o "$out/sluice-kube" ./components)
  gb_log "building containerd $CONTAINERD_VERSION"
  gobin="$(cd "$out" && pwd)"
  # no_btrfs: the btrfs snapshotter needs C headers Debian does not install by default; overlayfs is used.
  (cd "$out" && GOFLAGS= GOBIN="$gobin" GOTOOLCHAIN=local CGO_ENABLED=1 go install -p 2 -trimpath -tags no_btrfs \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION")
}

key="$(cd "$src" && { cat go.mod go.sum components/*.go; echo "$GB_GO_VERSION $CONTAINERD_VERSION"; cat "$root/scripts/cluster-build.sh" "$root/scripts/lib/go-build.sh"; } | sha256sum | cut -c1-16)"
gb_cached "$(gb_cache_root)/cluster" "$key" ctr build_cluster
