// Package pyruntime ships the Python worker runtime inside the Go binary.
package pyruntime

import (
	"embed"
	"encoding/json"
	"io/fs"
)

// files is the runtime package (stdlib only, Python 3.9+). The patterns name the .py
// files, so __init__.py is included and __pycache__ is not.
//
//go:embed caddy_wsgi/*.py caddy_wsgi/asgi/*.py
var files embed.FS

// Source is the bundle workers receive on standard input: a JSON object mapping each
// file of the package (caddy_wsgi/__init__.py, caddy_wsgi/asgi/http.py, ...) to its
// source. See PROTOCOL.md.
var Source = bundle()

// Bootstrap is the `python -c` program that reads the bundle from standard input,
// installs the in-memory importer of caddy_wsgi/importer.py and runs
// caddy_wsgi.boot.main with the remaining arguments.
const Bootstrap = "import sys,json;b=json.loads(sys.stdin.buffer.read());" +
	"g={'__name__':'caddy_wsgi.importer'};exec(b['caddy_wsgi/importer.py'],g);g['install'](b);" +
	"from caddy_wsgi.boot import main;main(sys.argv[1:])"

func bundle() []byte {
	sources := map[string]string{}
	err := fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := files.ReadFile(path)
		sources[path] = string(data)
		return err
	})
	if err != nil {
		panic(err)
	}
	out, err := json.Marshal(sources) // keys sorted: the same bytes every build
	if err != nil {
		panic(err)
	}
	return out
}
