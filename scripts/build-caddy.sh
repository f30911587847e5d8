#!/usr/bin/env bash
# Builds a caddy binary with our module, as described by xcaddy.json (Caddy version and plugins).
# Usage: scripts/build-caddy.sh [output path]   (default: ./caddy)
# Installs xcaddy with `go install` when it is not on PATH. Builds with cgo off, as users do.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/caddy}
case "$out" in /*) ;; *) out=$PWD/$out ;; esac
manifest=$root/xcaddy.json

read_manifest() { python3 - "$manifest" "$root" <<'PY'
import json, os, sys
m = json.load(open(sys.argv[1]))
print(m["caddy_version"])
print(m.get("xcaddy_version", "latest"))
for p in m.get("plugins", []):
    spec = p["module"]
    if p.get("version"):
        spec += "@" + p["version"]
    if p.get("replace"):
        spec += "=" + os.path.normpath(os.path.join(sys.argv[2], p["replace"]))
    print(spec)
PY
}
mapfile -t lines < <(read_manifest)
caddy_version=${lines[0]}
xcaddy_version=${lines[1]}
withs=()
for spec in "${lines[@]:2}"; do withs+=(--with "$spec"); done

export PATH="$(go env GOPATH)/bin:$PATH"
if ! command -v xcaddy >/dev/null 2>&1; then
  echo "installing xcaddy $xcaddy_version" >&2
  go install "github.com/caddyserver/xcaddy/cmd/xcaddy@$xcaddy_version"
fi
export CGO_ENABLED=0
xcaddy build "$caddy_version" --output "$out" "${withs[@]}"
