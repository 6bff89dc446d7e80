#!/usr/bin/env bash
# Build the sign-in path of the SSO tests: oauth2-proxy from its Go module (Go 1.26, through the Go
# module proxy), cached by version outside the repo. The OIDC provider of those tests is the PyPI package
# oidc-provider-mock (installed with the [dev] extra); Dex is not served by the module proxy here
# (its current versions are not Go-module versions). Idempotent: a cached binary is kept.
# Usage: scripts/install-sso.sh  (prints the binary's path). Env: SSO_CACHE_DIR.
set -euo pipefail

OAUTH2_PROXY_VERSION="v7.15.6"
CACHE="${SSO_CACHE_DIR:-$HOME/.cache/orchestration-platform/sso}/oauth2-proxy-$OAUTH2_PROXY_VERSION"
BIN="$CACHE/oauth2-proxy"

if [[ -x "$BIN" ]] && "$BIN" --version >/dev/null 2>&1; then
    echo "$BIN"
    exit 0
fi
command -v go >/dev/null || { echo "install-sso: Go is missing (Go 1.26 is on the project's machines)" >&2; exit 1; }
mkdir -p "$CACHE"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# Low priority: `make test` may build this while other work runs on the machine.
GOBIN="$WORK" CGO_ENABLED=0 nice -n 19 go install -trimpath \
    -ldflags "-s -w -X github.com/oauth2-proxy/oauth2-proxy/v7/pkg/version.VERSION=$OAUTH2_PROXY_VERSION" \
    "github.com/oauth2-proxy/oauth2-proxy/v7@$OAUTH2_PROXY_VERSION"
install -m 0755 "$WORK/oauth2-proxy" "$BIN.tmp.$$"
mv -f "$BIN.tmp.$$" "$BIN"
echo "$BIN"
