#!/usr/bin/env bash
# Soak test (not part of CI): bench/soak.sh [minutes, default 10]
# Steady load on 127.0.0.1 against a caddy whose workers recycle every 50 requests, with a
# config reload every 10 s (two configs, alternating). Prints requests, failures and the RSS
# of caddy and of its workers at the start, middle and end. Uses $CADDY_BIN when set, else
# builds caddy with scripts/build-caddy.sh into bench/.build/caddy-soak. Extra arguments go
# to bench/soak.py (--clients N, --reload-every S; --asgi: the asgi directive with WebSocket
# clients too, run with --python bench/.venv/bin/python for uvloop).
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$bench")
minutes=${1:-10}
shift || true
caddy=${CADDY_BIN:-}
if [ -z "$caddy" ]; then
  mkdir -p "$bench/.build"
  caddy=$bench/.build/caddy-soak
  "$root/scripts/build-caddy.sh" "$caddy" >&2
fi
python=$(python3 -c 'import sys; print(sys.executable)')
exec python3 "$bench/soak.py" --caddy "$caddy" --minutes "$minutes" --python "$python" "$@"
