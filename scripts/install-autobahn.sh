#!/usr/bin/env bash
# Installs Autobahn|Testsuite (wstest) for TestAutobahn: autobahntestsuite 25.10.1 runs on
# Python 2.7 only, which has no venv, so it goes into a --target directory. The pyenv 2.7
# interpreter is used when there is one. Usage: scripts/install-autobahn.sh [DIR]
set -euo pipefail
dir="${1:-${AUTOBAHN_DIR:-$HOME/.cache/caddy-wsgi/autobahn-25.10.1}}"
if [ -x "$dir/bin/wstest" ] && [ -f "$dir/.python" ]; then exit 0; fi
py=""
if command -v pyenv >/dev/null; then
  for p in "$(pyenv root)"/versions/2.7*/bin/python; do [ -x "$p" ] && py="$p"; done
fi
[ -n "$py" ] || py="$(command -v python2.7 || true)"
if [ -z "$py" ]; then
  echo "install-autobahn: no Python 2.7 (pyenv install 2.7.18, or apt-get install python2.7)" >&2
  exit 1
fi
mkdir -p "$dir"
"$py" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
  --target "$dir" autobahntestsuite==25.10.1
touch "$dir/zope/__init__.py" # zope.interface is a namespace package Python 2 cannot find
echo "$py" > "$dir/.python"
