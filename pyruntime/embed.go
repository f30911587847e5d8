// Package pyruntime ships the Python worker runtime inside the Go binary.
package pyruntime

import _ "embed"

// Source is the worker runtime (stdlib only, Python 3.9+). Workers receive it on
// standard input; see PROTOCOL.md.
//
//go:embed caddy_wsgi_worker.py
var Source []byte

// Bootstrap is the `python -c` program that loads Source from standard input as the
// module caddy_wsgi_worker and runs its main with the remaining arguments.
const Bootstrap = "import sys,types;s=sys.stdin.buffer.read();" +
	"m=types.ModuleType('caddy_wsgi_worker');m.__file__='caddy_wsgi_worker.py';" +
	"sys.modules['caddy_wsgi_worker']=m;" +
	"exec(compile(s,'caddy_wsgi_worker.py','exec'),m.__dict__);m.main(sys.argv[1:])"
