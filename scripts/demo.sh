#!/usr/bin/env bash
# The main demo: the genomics federation as a cluster of namespaces running a
# real Dask workflow over sealed links (scripts/demo_cluster.py), then the
# policy walkthrough: lint, format-check, explain and verify every example
# policy, and a semantic diff between two versions of one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
policyc=.venv/bin/policyc
shopt -s nullglob
policies=(examples/*.policy)
[ ${#policies[@]} -gt 0 ] || { echo "demo: no examples/*.policy" >&2; exit 1; }

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  step() { printf '\n== %s\n' "$*"; }
fi

if [ "${SEALNET_DEMO_SKIP_CLUSTER:-0}" != 1 ]; then
  step "the genomics federation on this machine: a Dask workflow across sealed domains"
  if [ "$(id -u)" -ne 0 ]; then
    echo "demo: the cluster needs root (namespaces, BPF); skipping it (SEALNET_DEMO_SKIP_CLUSTER=1 hides this)" >&2
  else
    .venv/bin/python scripts/demo_cluster.py
  fi
fi

step "lint (syntax, semantic checks and the Z3 verifier)"
$policyc lint "${policies[@]}"

step "format check"
$policyc fmt --check "${policies[@]}" && echo "all ${#policies[@]} policies are formatted"

for p in "${policies[@]}"; do
  step "explain $p"
  $policyc explain "$p"
  step "verify $p"
  $policyc verify "$p"
done

step "diff: genomics with an extra rule that opens ssh to the lab in plaintext"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed 's/^rule to_align:/rule lab_ssh: allow plaintext tcp from hospital to lab port 22\nrule to_align:/' \
  examples/genomics.policy > "$tmp/genomics-v4.policy"
$policyc diff examples/genomics.policy "$tmp/genomics-v4.policy" || true

step "sealed traffic between two nodes (network namespaces, ChaCha20-Poly1305 in eBPF)"
.venv/bin/python scripts/demo_sealed.py
