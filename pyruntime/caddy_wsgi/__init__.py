"""caddy-wsgi worker runtime: serves one WSGI or ASGI app to Caddy over inherited
socketpairs. Stdlib only, Python 3.9+; the wire protocol is PROTOCOL.md.

Caddy starts `<python> -c <bootstrap> caddy-wsgi-worker|caddy-wsgi-zygote <app spec>
<config JSON>` and writes this package to standard input as a {path: source} bundle,
which `importer` serves from memory; `boot.main(argv)` does the work.

Modules: codec (frames), transport (the socket side of a channel), wsgi (WSGI objects),
worker (the base worker class: one boot path), sync and gevent (WSGI worker classes),
asgi/ (the ASGI worker class), hooks, zygote (preload), process and platform.
"""
