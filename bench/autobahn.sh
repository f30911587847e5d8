#!/usr/bin/env bash
# The Autobahn|Testsuite cases TestAutobahn leaves out, against caddy serving the ASGI echo
# app: limits and performance (9.*: messages up to 16 MiB, many small frames) and the
# compression cases with the largest messages (12.*/13.* .9, .10, .13-.18). Prints each
# case's verdict and time; the HTML report goes to bench/results/autobahn/.
# Usage: bench/autobahn.sh [case pattern...]   (needs `make venv caddy autobahn`)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir="${AUTOBAHN_DIR:-$HOME/.cache/caddy-wsgi/autobahn-25.10.1}"
"$root/scripts/install-autobahn.sh" "$dir"
if [ $# -eq 0 ]; then
  set -- 9.\* 12.\*.9 12.\*.10 13.\*.9 13.\*.10
  for n in 13 14 15 16 17 18; do set -- "$@" "12.*.$n" "13.*.$n"; done
fi
cases=$(printf '"%s",' "$@"); cases="[${cases%,}]"
port=${PORT:-9311}
work=$(mktemp -d)
trap 'kill $caddy 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/Caddyfile" <<CF
{
	admin off
	auto_https off
}
http://127.0.0.1:$port {
	asgi asgi_echo:app {
		python $root/.venv/bin/python
		chdir $root/integration/testdata/apps
		workers 1
	}
}
CF
"$root/.build/caddy" run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
caddy=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.2; done
out="$root/bench/results/autobahn"
cat > "$work/spec.json" <<SPEC
{"outdir": "$out", "servers": [{"agent": "caddy", "url": "ws://127.0.0.1:$port/"}],
 "cases": $cases, "exclude-cases": []}
SPEC
(cd "$work" && PYTHONPATH="$dir" "$(cat "$dir/.python")" "$dir/bin/wstest" -m fuzzingclient -s spec.json >/dev/null)
python3 - "$out/index.json" <<'PY'
import collections, json, sys
res = json.load(open(sys.argv[1]))["caddy"]
tally = collections.Counter(r["behavior"] for r in res.values())
key = lambda c: [int(x) for x in c.split(".")]
for case in sorted(res, key=key):
    r = res[case]
    print("%-8s %-14s %6d ms" % (case, r["behavior"], r["duration"]))
print(dict(tally))
PY
