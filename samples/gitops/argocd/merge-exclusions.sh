#!/usr/bin/env bash
# Appends resource-exclusions.yaml to argocd-cm's resource.exclusions, keeping the entries already
# there: the key is a single string, so a merge patch of it would replace the whole list, Argo CD's
# default exclusions (Endpoints, Leases, TokenReviews, ...) included. Idempotent: nothing happens when
# sluice.dev is already excluded. Assumes the existing list is a block sequence starting at column 0,
# as Argo CD's install manifests write it.
# usage: merge-exclusions.sh [namespace of Argo CD, default argocd]   (needs kubectl and jq; KUBECONFIG)
set -euo pipefail
ns="${1:-argocd}"
here="$(cd "$(dirname "$0")" && pwd)"
current="$(kubectl -n "$ns" get configmap argocd-cm -o json | jq -r '.data["resource.exclusions"] // ""')"
if grep -q 'sluice\.dev' <<<"$current"; then
  echo "argocd-cm: resource.exclusions already has sluice.dev"
  exit 0
fi
ours="$(grep -v '^#' "$here/resource-exclusions.yaml")"
if [ -n "$current" ]; then merged="${current%$'\n'}"$'\n'"$ours"$'\n'; else merged="$ours"$'\n'; fi
kubectl -n "$ns" patch configmap argocd-cm --type merge \
  -p "$(jq -n --arg v "$merged" '{data: {"resource.exclusions": $v}}')"
