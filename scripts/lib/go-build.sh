# Shared by the scripts that build Go binaries for the tests (apiserver-build.sh, cluster-build.sh,
# cni-build.sh): finds a Go toolchain new enough, and builds into a cache directory keyed by a hash of
# the inputs, outside the clone so that CI clones reuse it. Source it; it defines functions only.

gb_log() { printf '[%s] %s\n' "${GB_NAME:-go-build}" "$*" >&2; }

# gb_find_go NEED: puts the first Go >= NEED (major.minor) on PATH; sets GB_GO_VERSION. Debian 12's
# golang-go (1.19) cannot build Kubernetes 1.37, so the usual location of an upstream Go is tried too.
gb_find_go() {
  local need="$1" cand v found=()
  ver_ge() {
    local a1 a2 b1 b2
    IFS=. read -r a1 a2 _ <<<"$1"
    IFS=. read -r b1 b2 _ <<<"$2"
    ((a1 > b1 || (a1 == b1 && ${a2%%[!0-9]*} >= ${b2%%[!0-9]*})))
  }
  for cand in "$(command -v go || true)" /usr/local/go/bin/go; do
    [ -n "$cand" ] && [ -x "$cand" ] || continue
    v="$("$cand" env GOVERSION 2>/dev/null || true)"
    v="${v#go}"
    [ -n "$v" ] || continue
    found+=("$cand ($v)")
    if ver_ge "$v" "$need"; then
      export PATH="$(dirname "$cand"):$PATH"
      GB_GO_VERSION="$v"
      return 0
    fi
  done
  if [ "${#found[@]}" -eq 0 ]; then
    gb_log "error: no Go toolchain found; Go >= $need must be on PATH."
  else
    gb_log "error: Go too old: ${found[*]}; Go >= $need is needed (Debian 12's golang-go is 1.19)."
  fi
  return 1
}

# gb_cached DIR KEY OUTPUT BUILD_FUNCTION: when DIR/KEY/OUTPUT exists, does nothing. Otherwise, under a
# lock, runs BUILD_FUNCTION with its output directory (DIR/KEY/.tmp.PID) as $1, moves that directory
# into place, and removes builds of older keys. Prints DIR/KEY on stdout either way.
gb_cached() {
  local dir="$1" key="$2" output="$3" build="$4" tmp start d
  if [ -e "$dir/$key/$output" ]; then
    echo "$dir/$key"
    return 0
  fi
  mkdir -p "$dir"
  exec 9>"$dir/.lock"
  flock 9
  if ! [ -e "$dir/$key/$output" ]; then # another process may have built it while we waited
    tmp="$dir/.tmp.$$"
    rm -rf "$tmp" && mkdir -p "$tmp"
    start=$(date +%s)
    "$build" "$tmp"
    rm -rf "${dir:?}/$key" && mv "$tmp" "$dir/$key"
    gb_log "built in $(($(date +%s) - start))s: $(du -sh "$dir/$key" | cut -f1) in $dir/$key"
    # Older builds are dead weight once the sources changed.
    for d in "$dir"/*/; do
      [ "${d%/}" = "$dir/$key" ] || rm -rf "${d%/}"
    done
  fi
  exec 9>&-
  echo "$dir/$key"
}

# gb_kube_ldflags GO_MOD: the version stamped into Kubernetes binaries built from a module that requires
# k8s.io/kubernetes. Without it they report v0.0.0-master, which breaks clients that check versions
# (helm's kubeVersion, kubectl's skew warning, kubelet's registration).
gb_kube_ldflags() {
  local kver kmajor kminor pkg flags="-s -w"
  kver="$(sed -n 's/^[[:space:]]*k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$1")"
  IFS=. read -r kmajor kminor _ <<<"${kver#v}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$kver -X $pkg.gitMajor=$kmajor -X $pkg.gitMinor=$kminor -X $pkg.gitTreeState=clean"
  done
  echo "$flags"
}

gb_cache_root() { echo "${SLUICE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}"; }
