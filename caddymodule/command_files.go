package caddymodule

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/spf13/pflag"

	"github.com/caddy-wsgi/caddy-wsgi/workerpool"
)

// The server commands' --env-file and --x-accel-root.

func addFileFlags(fs *pflag.FlagSet) {
	fs.StringArray("env-file", nil, "Dotenv file of KEY=VALUE lines for the workers, read at each worker start (repeatable)")
	fs.String("x-accel-root", "", "Serve X-Accel-Redirect (a path under DIR) and X-Sendfile (a file under DIR) answers of the app from DIR with Caddy's file_server")
}

// envFileFlag reads --env-file into h, as absolute paths (a printed config keeps
// working from another directory), and checks the files now for a clear error.
func envFileFlag(fs *pflag.FlagSet, h *WSGI) error {
	files, _ := fs.GetStringArray("env-file")
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			return fmt.Errorf("--env-file %q: %v", f, err)
		}
		h.EnvFile = append(h.EnvFile, abs)
	}
	if _, err := workerpool.LoadEnvFiles(h.EnvFile); err != nil {
		return fmt.Errorf("--env-file: %w", err)
	}
	return nil
}

// xAccelHandler returns, for --x-accel-root, the intercept handler to put before the
// app (nil without the flag): an answer with X-Accel-Redirect or X-Sendfile is replaced
// by file_server's response for that file under the root (ranges, ETags and
// conditional requests included), the way NGINX and Apache do it. X-Sendfile's absolute
// path loses the root as a prefix; either way file_server never leaves the root.
func xAccelHandler(fs *pflag.FlagSet) (json.RawMessage, error) {
	dir, _ := fs.GetString("x-accel-root")
	if dir == "" {
		return nil, nil
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("--x-accel-root %q is not a directory", dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("--x-accel-root %q: %v", dir, err)
	}
	type obj = map[string]any
	respond := func(header string, strip bool) obj {
		handle := []obj{
			{"handler": "rewrite", "method": "GET", "uri": "{http.intercept.header." + header + "}"},
		}
		if strip {
			handle = append(handle, obj{"handler": "rewrite", "strip_path_prefix": abs})
		}
		handle = append(handle,
			obj{"handler": "headers", "response": obj{"deferred": true, "delete": []string{header}}},
			obj{"handler": "file_server", "root": abs})
		return obj{
			"match":  obj{"headers": obj{header: []string{"*"}}},
			"routes": []obj{{"handle": handle}},
		}
	}
	return caddyconfig.JSON(obj{
		"handler":         "intercept",
		"handle_response": []obj{respond("X-Accel-Redirect", false), respond("X-Sendfile", true)},
	}, nil), nil
}
