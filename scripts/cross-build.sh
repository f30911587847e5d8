#!/usr/bin/env bash
# Cross-compiles the module with cgo off for every platform it supports (issue 12):
# `go vet ./...` (which type-checks the tests too) and `go build ./...` per target, and
# links a whole caddy with the plugin (internal/caddymain, what xcaddy generates) where
# the platform code differs most. Windows builds on purpose: the handlers refuse to
# provision there, but a Caddy for Windows that includes this plugin must still build.
# Usage: scripts/cross-build.sh [goos/goarch ...]
set -euo pipefail
cd "$(dirname "$0")/.."
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 freebsd/amd64 windows/amd64)
link=" darwin/arm64 freebsd/amd64 windows/amd64 "

# The end-to-end tests (integration/) read /proc and use pidfd: they are Linux-only, and
# their files say so with //go:build linux, so that `go test ./...` on a Mac skips them.
# A file without the line only warns here; it is vetted on Linux.
untagged=$(grep -L '^//go:build linux' integration/*.go || true)
if [ -n "$untagged" ]; then
  echo "cross-build: warning: integration files without //go:build linux (vetted on Linux only):" $untagged >&2
fi
pkgs=$(go list ./... | grep -v '/integration$')

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export CGO_ENABLED=0
for t in "${targets[@]}"; do
  export GOOS=${t%/*} GOARCH=${t#*/}
  start=$SECONDS
  if [ "$GOOS" = linux ]; then go vet ./...; else go vet $pkgs; fi
  go build ./...
  what="vet+build"
  if [[ $link == *" $t "* ]]; then
    go build -o "$out/caddy-$GOOS-$GOARCH" ./internal/caddymain
    # The plugin really is in the binary, not dropped by the linker.
    go tool nm "$out/caddy-$GOOS-$GOARCH" | grep 'caddymodule.(\*WSGI).Provision' >/dev/null ||
      { echo "cross-build: $t caddy has no wsgi handler" >&2; exit 1; }
    what="vet+build+caddy"
  fi
  echo "cross-build: $t $what ok in $((SECONDS - start))s"
done
