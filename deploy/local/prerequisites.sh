#!/usr/bin/env bash
# Tools the offline packaging checks (tests/deploy) need besides the venv, installed when missing:
#   - docker-compose (Debian's package): `docker-compose config` validates docker-compose.yml without an engine;
#   - kubectl with a built-in kustomize that knows components (kustomize >= 3.7): builds deploy/k8s.
# No Docker engine, kind or Tilt is needed: the tests check the files, not a running cluster.
set -euo pipefail

log() { printf 'prerequisites: %s\n' "$*" >&2; }

bash "$(dirname "$0")/install-missing.sh" docker-compose docker-compose "make test-deploy"

# Debian's own kubectl (package kubernetes-client) is 1.20 with a kustomize too old for components, so a
# missing or old kubectl is reported rather than replaced by it.
if ! command -v kubectl >/dev/null 2>&1; then
  log "kubectl is missing: install a current kubectl (1.27 or later) from the Kubernetes packages"; exit 1
fi
kustomize_version=$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\{0,1\}\([0-9]*\)\..*/\1/p')
if [ -z "$kustomize_version" ] || [ "$kustomize_version" -lt 4 ]; then
  log "kubectl's kustomize is too old (${kustomize_version:-unknown}): install a current kubectl"; exit 1
fi
