#!/usr/bin/env bash
# Type check (strict) and lint/format check. Part of the test command.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export PATH="$root/.tooling/node/bin:$PATH"
npx --no-install tsc -p tsconfig.json
npx --no-install biome ci --reporter=summary .
