#!/usr/bin/env bash
# Builds test/apiserver (kube-apiserver + embedded etcd) once and prints the binary's path on stdout.
# The binary is cached under .cache/apiserver/<hash of go.mod, go.sum, sources, Go version>/, so only
# the first run pays for the (slow) build; later runs print the path at once. Idempotent and safe to
# run concurrently.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/test/apiserver"
log() { printf '[apiserver-build] %s\n' "$*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  log "error: no 'go' on PATH; test/apiserver needs Go >= $(sed -n 's/^go //p' "$src/go.mod")"
  exit 1
fi
need="$(sed -n 's/^go //p' "$src/go.mod")"
have="$(go env GOVERSION)"
have="${have#go}"
# Compare major.minor: Debian 12's golang-go (1.19) cannot build Kubernetes 1.37.
ver_ge() {
  local a1 a2 b1 b2
  IFS=. read -r a1 a2 _ <<<"$1"
  IFS=. read -r b1 b2 _ <<<"$2"
  ((a1 > b1 || (a1 == b1 && ${a2%%[!0-9]*} >= ${b2%%[!0-9]*})))
}
if ! ver_ge "$have" "$need"; then
  log "error: Go $have at $(command -v go) is too old; test/apiserver (Kubernetes 1.37) needs Go >= $need."
  log "       Put a newer Go first on PATH (Debian 12's golang-go is 1.19)."
  exit 1
fi

key="$(cd "$src" && { cat go.mod go.sum; for f in $(ls ./*.go | LC_ALL=C sort); do cat "$f"; done; echo "$have"; } | sha256sum | cut -c1-16)"
cache="$root/.cache/apiserver"
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
# -p 2 bounds parallel compiles (and memory) on small machines.
(cd "$src" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go build -p 2 -trimpath -ldflags "-s -w" -o "$tmp" .)
mv -f "$tmp" "$out"
log "built in $(($(date +%s) - start))s, $(du -h "$out" | cut -f1)"
# Older builds are dead weight once the sources changed.
for d in "$cache"/*/; do
  [ "${d%/}" = "$cache/$key" ] || rm -rf "${d%/}"
done
echo "$out"
