#!/usr/bin/env bash
# The caddy-wsgi benchmark suite: one command.
#   bench/run.sh                 full run (defaults: --procs 2 --threads 2 --duration 5 --connections 64)
#   bench/run.sh --quick         smoke run (1 s cells, fewer workloads)
#   bench/run.sh --only caddy-wsgi,gunicorn-sync --workloads hello,django
#   bench/run.sh --only caddy-asgi,caddy+uvicorn,uvicorn,granian-asgi,hypercorn \
#                --workloads asgi-hello,fastapi-json,ws-echo      (the ASGI part alone)
#   bench/run.sh --write-docs    regenerate docs/benchmarks.md from bench/results/latest.json
#   bench/run.sh --list          contenders and workloads
# Extra options handled here: --no-build (use bench/.build/caddy as it is), --retry-snake (build
# caddy-snake again). Everything else goes to bench/run.py (see --help).
# Installs what is missing: bench/.venv (bench/requirements.txt), wrk and h2load (apt), caddy with
# this module (scripts/build-caddy.sh bench/.build/caddy, or $CADDY_BIN), and builds the WebSocket
# load generator bench/.build/wsload from bench/wsload (its own Go module; if it fails to build, the
# run goes on and the ws-echo cells fail with the reason), the IPC probe bench/.build/ipcprobe from
# bench/ipcprobe (its own Go module), and caddy-snake from its source tarball (see below).
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$bench")
build=$bench/.build
venv=$bench/.venv
mkdir -p "$build"

no_build=0 retry_snake=0 setup=1 args=()
for a in "$@"; do
  case "$a" in
    --no-build) no_build=1 ;;
    --retry-snake) retry_snake=1 ;;
    --write-docs|--list|-h|--help) setup=0; args+=("$a") ;;
    *) args+=("$a") ;;
  esac
done

say() { printf '== %s\n' "$*"; }

# --- Python venv with the pinned packages (uWSGI separately: it is compiled and may fail) -----
req=$bench/requirements.txt
stamp=$venv/.installed-$(sha256sum "$req" | cut -c1-16)
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  python3 -m venv "$venv"
fi
if [ ! -e "$stamp" ]; then
  say "installing $req"
  grep -v -i '^uwsgi' "$req" > "$build/requirements-main.txt"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$build/requirements-main.txt"
  uw=$(grep -i '^uwsgi' "$req" || true)
  rm -f "$build/uwsgi.err"
  if [ -n "$uw" ]; then
    if ! "$venv/bin/pip" install --quiet --disable-pip-version-check "$uw" > "$build/uwsgi.log" 2>&1; then
      { echo "pip install $uw failed:"; grep -i -m 12 -E 'error|fatal' "$build/uwsgi.log" || tail -n 12 "$build/uwsgi.log"; } > "$build/uwsgi.err"
      say "uWSGI did not install; the run goes on without it:"; cat "$build/uwsgi.err"
    fi
  fi
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi

if [ "$setup" = 1 ]; then
  # --- load tools -----------------------------------------------------------------------------
  pkgs=()
  command -v wrk >/dev/null 2>&1 || pkgs+=(wrk)
  command -v h2load >/dev/null 2>&1 || pkgs+=(nghttp2-client)
  command -v curl >/dev/null 2>&1 || pkgs+=(curl)
  if [ ${#pkgs[@]} -gt 0 ]; then
    say "installing ${pkgs[*]}"
    apt-get update && apt-get install -y "${pkgs[@]}"
  fi

  # --- caddy with caddy-wsgi ------------------------------------------------------------------
  if [ -n "${CADDY_BIN:-}" ]; then
    say "using CADDY_BIN=$CADDY_BIN"
  elif [ "$no_build" = 1 ] && [ -x "$build/caddy" ]; then
    say "using $build/caddy as built (--no-build)"
  else
    say "building $build/caddy with scripts/build-caddy.sh"
    if ! "$root/scripts/build-caddy.sh" "$build/caddy" > "$build/caddy-build.log" 2>&1; then
      tail -n 30 "$build/caddy-build.log"
      echo "caddy build failed (log: $build/caddy-build.log)" >&2
      exit 1
    fi
  fi

  # --- bench/wsload: the WebSocket load generator (Go, its own module; go build caches) -------
  say "building $build/wsload (bench/wsload)"
  rm -f "$build/wsload.err"
  if ! (cd "$bench/wsload" && go build -trimpath -buildvcs=false -o "$build/wsload" .) > "$build/wsload-build.log" 2>&1; then
    tail -n 12 "$build/wsload-build.log" | sed -E 's#https?://[^/ ]+#<GOPROXY>#g' > "$build/wsload.err"
    rm -f "$build/wsload"
    say "bench/wsload did not build; the run goes on and the ws-echo cells will fail:"
    sed 's/^/   /' "$build/wsload.err"
  fi

  # --- bench/ipcprobe: the IPC probe printed with the hello cell (Go, stdlib only) ------------
  say "building $build/ipcprobe (bench/ipcprobe)"
  rm -f "$build/ipcprobe.err"
  if ! (cd "$bench/ipcprobe" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -o "$build/ipcprobe" .) > "$build/ipcprobe-build.log" 2>&1; then
    tail -n 12 "$build/ipcprobe-build.log" > "$build/ipcprobe.err"
    rm -f "$build/ipcprobe"
    say "bench/ipcprobe did not build; the run goes on without the IPC probe:"
    sed 's/^/   /' "$build/ipcprobe.err"
  fi

  # --- caddy-snake: built from its source tarball (the module proxy does not serve it) ---------
  # Source: $CADDY_SNAKE_SRC, else the newest ../shared/peers/caddy-snake-*.tar.gz beside the repo.
  # Extracted into bench/.build/caddy-snake-src at build time (its code is not part of this repo);
  # rebuilt when the tarball changes; a failed build is remembered (--retry-snake tries again).
  snake_src=${CADDY_SNAKE_SRC:-$(ls -t "$(dirname "$root")"/shared/peers/caddy-snake-*.tar.gz 2>/dev/null | head -n 1 || true)}
  if [ "$retry_snake" = 1 ]; then rm -f "$build/caddy-snake.err" "$build/caddy-snake.src"; fi
  if [ -z "$snake_src" ] || [ ! -e "$snake_src" ]; then
    rm -f "$build/caddy-snake"
    echo "no caddy-snake source: set CADDY_SNAKE_SRC to its tarball or directory (looked for ../shared/peers/caddy-snake-*.tar.gz)" > "$build/caddy-snake.err"
  else
    snake_id="$(basename "$snake_src") $(if [ -f "$snake_src" ]; then sha256sum "$snake_src" | cut -c1-16; else echo dir; fi)"
    if [ "$(cat "$build/caddy-snake.src" 2>/dev/null)" != "$snake_id" ]; then rm -f "$build/caddy-snake" "$build/caddy-snake.err"; fi
    if [ ! -x "$build/caddy-snake" ] && [ ! -e "$build/caddy-snake.err" ]; then
      say "building caddy-snake from $snake_src: xcaddy build v2.11.9 --with github.com/mliezun/caddy-snake@v0.0.0=<src> (30 min max: a first build on a busy 2-CPU machine is slow)"
      export PATH="$(go env GOPATH)/bin:$PATH"
      command -v xcaddy >/dev/null 2>&1 || go install github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5
      srcdir=$build/caddy-snake-src
      rm -rf "$srcdir"
      mkdir -p "$srcdir"
      if [ -d "$snake_src" ]; then
        cp -r "$snake_src"/. "$srcdir"/
      else
        tar -xzf "$snake_src" -C "$srcdir"
      fi
      # the tarball holds one top-level directory (caddy-snake/): use the one with go.mod
      moddir=$(dirname "$(find "$srcdir" -maxdepth 2 -name go.mod | head -n 1)")
      snake_tmp=$(mktemp -d)
      # caddy-snake is pure Go (its Python workers are subprocesses), so CGO is off like ours
      if [ -n "$moddir" ] && [ -e "$moddir/go.mod" ] && (cd "$snake_tmp" && CGO_ENABLED=0 timeout 1800 xcaddy build v2.11.9 \
            --output "$build/caddy-snake" --with "github.com/mliezun/caddy-snake@v0.0.0=$moddir") > "$build/caddy-snake.log" 2>&1; then
        echo "$snake_id" > "$build/caddy-snake.src"
      else
        { grep -E -m 6 'FATAL|[Ee]rror|cannot|Terminated|killed' "$build/caddy-snake.log" \
            || tail -n 6 "$build/caddy-snake.log"; } | sed -E 's#https?://[^/ ]+#<GOPROXY>#g' > "$build/caddy-snake.err" 2>/dev/null
        [ -s "$build/caddy-snake.err" ] || { echo "no go.mod in $snake_src or the build failed:"; tail -n 8 "$build/caddy-snake.log" 2>/dev/null; } > "$build/caddy-snake.err"
        rm -f "$build/caddy-snake"
      fi
      rm -rf "$snake_tmp"
    fi
  fi
  if [ -e "$build/caddy-snake.err" ]; then
    say "caddy-snake is skipped: its build failed (bench/run.sh --retry-snake tries again):"
    sed 's/^/   /' "$build/caddy-snake.err"
  fi

  # --- bench/.venv312 for caddy-snake's ASGI workers: its worker script passes loop_factory= to
  # asyncio.run(), which Python 3.11 lacks (3.12+); its WSGI workers run on bench/.venv like the rest.
  venv312=$bench/.venv312
  rm -f "$build/venv312.err"
  if [ -x "$build/caddy-snake" ]; then
    py312=
    if command -v pyenv >/dev/null 2>&1; then
      py312=$(ls -d "$(pyenv root)"/versions/3.12*/bin/python 2>/dev/null | tail -n 1 || true)
    fi
    [ -n "$py312" ] || py312=$(command -v python3.12 || true)
    stamp312=$venv312/.installed-$(sha256sum "$req" | cut -c1-16)
    if [ -z "$py312" ] && [ ! -x "$venv312/bin/python" ]; then
      echo "no Python 3.12 found (pyenv versions/3.12*, python3.12 on PATH)" > "$build/venv312.err"
    elif [ ! -e "$stamp312" ]; then
      say "creating $venv312 with $py312 (caddy-snake's ASGI workers need Python 3.12+)"
      [ -x "$venv312/bin/python" ] || "$py312" -m venv "$venv312"
      grep -v -i '^uwsgi' "$req" > "$build/requirements-312.txt"
      if "$venv312/bin/pip" install --quiet --disable-pip-version-check -r "$build/requirements-312.txt" > "$build/venv312.log" 2>&1; then
        rm -f "$venv312"/.installed-*
        touch "$stamp312"
      else
        { echo "pip install into $venv312 failed:"; tail -n 8 "$build/venv312.log"; } > "$build/venv312.err"
      fi
    fi
    if [ -e "$build/venv312.err" ]; then
      say "caddy-snake-asgi is skipped: no Python 3.12 venv:"; sed 's/^/   /' "$build/venv312.err"
    fi
  fi
fi

# --- the run: Python driver as a child; on exit or a signal it is stopped and cleans up ------
child=
cleanup() {
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM HUP
"$venv/bin/python" "$bench/run.py" "${args[@]}" &
child=$!
set +e
wait "$child"
rc=$?
set -e
child=
exit $rc
