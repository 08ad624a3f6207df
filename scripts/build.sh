#!/usr/bin/env bash
# Builds the BPF objects, the native addon and the generated layouts. make keeps it incremental.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
make -s -C "$root/bpf" NODE_INCLUDE="$root/.tooling/node/include/node"
