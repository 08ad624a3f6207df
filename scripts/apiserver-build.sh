#!/usr/bin/env bash
# Builds test/apiserver (kube-apiserver + embedded etcd) once and prints the binary's path on stdout.
# The binary is cached under .cache/apiserver/<hash of go.mod, go.sum, sources, Go version>/, so only
# the first run pays for the (slow) build; later runs print the path at once. Idempotent and safe to
# run concurrently.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/test/apiserver"
log() { printf '[apiserver-build] %s\n' "$*" >&2; }

need="$(sed -n 's/^go //p' "$src/go.mod")"
# Compare major.minor: Debian 12's golang-go (1.19) cannot build Kubernetes 1.37.
ver_ge() {
  local a1 a2 b1 b2
  IFS=. read -r a1 a2 _ <<<"$1"
  IFS=. read -r b1 b2 _ <<<"$2"
  ((a1 > b1 || (a1 == b1 && ${a2%%[!0-9]*} >= ${b2%%[!0-9]*})))
}
# The go on PATH first, then the usual install location of an upstream Go.
gobin="" found=()
for cand in "$(command -v go || true)" /usr/local/go/bin/go; do
  [ -n "$cand" ] && [ -x "$cand" ] || continue
  v="$("$cand" env GOVERSION 2>/dev/null || true)"
  v="${v#go}"
  [ -n "$v" ] || continue
  found+=("$cand ($v)")
  if ver_ge "$v" "$need"; then
    gobin="$cand" have="$v"
    break
  fi
done
if [ -z "$gobin" ]; then
  if [ "${#found[@]}" -eq 0 ]; then
    log "error: no Go toolchain found; test/apiserver (Kubernetes 1.37) needs Go >= $need on PATH."
  else
    log "error: Go too old: ${found[*]}; test/apiserver (Kubernetes 1.37) needs Go >= $need."
    log "       Put a newer Go first on PATH (Debian 12's golang-go is 1.19)."
  fi
  exit 1
fi
export PATH="$(dirname "$gobin"):$PATH"

key="$(cd "$src" && { cat go.mod go.sum; for f in $(ls ./*.go | LC_ALL=C sort); do cat "$f"; done; echo "$have"; cat "$root/scripts/apiserver-build.sh"; } | sha256sum | cut -c1-16)"
cache="${SLUICE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}/apiserver"  # outside the clone: CI clones reuse it
out="$cache/$key/sluice-apiserver"
if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -x "$out" ]; then # another process built it while we waited
  echo "$out"
  exit 0
fi

log "building kube-apiserver + etcd (first run only; several minutes) -> $out"
mkdir -p "$cache/$key"
tmp="$cache/$key/.sluice-apiserver.$$"
start=$(date +%s)
# Without these the server reports v0.0.0-master, which breaks clients that check versions (helm's
# kubeVersion, kubectl's skew warning).
kver="$(sed -n 's/^[[:space:]]*k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$src/go.mod")"
IFS=. read -r kmajor kminor _ <<<"${kver#v}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$kver -X $pkg.gitMajor=$kmajor -X $pkg.gitMinor=$kminor -X $pkg.gitTreeState=clean"
done
# -p 2 bounds parallel compiles (and memory) on small machines.
(cd "$src" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go build -p 2 -trimpath -ldflags "$ldflags" -o "$tmp" .)
mv -f "$tmp" "$out"
log "built in $(($(date +%s) - start))s, $(du -h "$out" | cut -f1)"
# Older builds are dead weight once the sources changed.
for d in "$cache"/*/; do
  [ "${d%/}" = "$cache/$key" ] || rm -rf "${d%/}"
done
echo "$out"
