package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// wsgiServerRun parses a `caddy wsgi-server` command line (without the command name)
// with env as the environment, and returns the config as generic JSON.
func wsgiServerRun(t *testing.T, env map[string]string, args ...string) (map[string]any, error) {
	t.Helper()
	fs := pflag.NewFlagSet("wsgi-server", pflag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	addWSGIServerFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	cfg, _, err := wsgiServerConfig(fs, fs.Args(), func(k string) string { return env[k] })
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out, nil
}

func mustWSGIServer(t *testing.T, env map[string]string, args ...string) map[string]any {
	t.Helper()
	cfg, err := wsgiServerRun(t, env, args...)
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return cfg
}

// at walks a path of map keys and slice indexes in decoded JSON.
func at(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %v: %T is not an object", path, v)
			}
			v = m[k]
		case int:
			s, ok := v.([]any)
			if !ok || k >= len(s) {
				t.Fatalf("at %v: %T has no element %d", path, v, k)
			}
			v = s[k]
		}
	}
	return v
}

func server(t *testing.T, cfg map[string]any) map[string]any {
	t.Helper()
	return at(t, cfg, "apps", "http", "servers", "wsgi").(map[string]any)
}

// handlers returns every handler object of the config (slices in order, object keys in
// any order).
func handlers(v any) []map[string]any {
	var out []map[string]any
	switch x := v.(type) {
	case map[string]any:
		if _, ok := x["handler"]; ok {
			out = append(out, x)
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		for _, k := range keys {
			out = append(out, handlers(x[k])...)
		}
	case []any:
		for _, e := range x {
			out = append(out, handlers(e)...)
		}
	}
	return out
}

func wsgiHandler(t *testing.T, cfg map[string]any) map[string]any {
	t.Helper()
	for _, h := range handlers(cfg) {
		if h["handler"] == "wsgi" {
			return h
		}
	}
	t.Fatalf("no wsgi handler in %v", cfg)
	return nil
}

func TestWSGIServerMinimal(t *testing.T) {
	cfg := mustWSGIServer(t, nil, "myproject.wsgi:application")
	h := wsgiHandler(t, cfg)
	if !reflect.DeepEqual(h, map[string]any{"handler": "wsgi", "app": "myproject.wsgi:application"}) {
		t.Errorf("handler = %v: every option unset", h)
	}
	srv := server(t, cfg)
	if got := at(t, srv, "listen", 0); got != "127.0.0.1:8000" {
		t.Errorf("listen = %v, want Gunicorn's 127.0.0.1:8000", got)
	}
	if at(t, srv, "automatic_https", "disable") != true {
		t.Errorf("plain HTTP without --domain must disable automatic HTTPS: %v", srv["automatic_https"])
	}
	if srv["logs"] != nil || cfg["logging"] != nil {
		t.Errorf("no access log unless asked: %v %v", srv["logs"], cfg["logging"])
	}
	if at(t, cfg, "admin", "config", "persist") != false || at(t, cfg, "admin", "disabled") != nil {
		t.Errorf("admin = %v, want Caddy's default endpoint, not persisted", cfg["admin"])
	}
	if len(at(t, srv, "routes").([]any)) != 1 {
		t.Errorf("routes = %v, want the app only", srv["routes"])
	}
}

func TestWSGIServerEveryFlag(t *testing.T) {
	static1, static2 := t.TempDir(), t.TempDir()
	cfg := mustWSGIServer(t, nil,
		"-w", "4", "--threads", "2", "--timeout", "45", "--graceful-timeout", "1m",
		"--max-requests", "1000", "--max-requests-jitter", "50",
		"--chdir", "/srv/app", "--venv", "/srv/venv", "--python", "/usr/bin/python3.12",
		"--pythonpath", "/a, /b", "-e", "A=1", "--env", "B=two words", "-e", "C=x=y",
		"--reload", "--preload", "--static", "/static/="+static1, "--static", "/media="+static2,
		"-b", "0.0.0.0:9000", "--access-logfile", "-", "--log-level", "warning", "--admin", "127.0.0.1:2999",
		"app:create_app()")
	h := wsgiHandler(t, cfg)
	want := map[string]any{
		"handler": "wsgi", "app": "app:create_app()", "workers": 4.0, "threads": 2.0,
		"timeout": 45e9, "graceful_timeout": 60e9, "max_requests": 1000.0, "max_requests_jitter": 50.0,
		"chdir": "/srv/app", "venv": "/srv/venv", "python": "/usr/bin/python3.12",
		"pythonpath": []any{"/a", "/b"}, "env": map[string]any{"A": "1", "B": "two words", "C": "x=y"},
		"reload": true, "preload": true,
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("handler\n got %v\nwant %v", h, want)
	}
	srv := server(t, cfg)
	if got := at(t, srv, "listen", 0); got != "0.0.0.0:9000" {
		t.Errorf("listen = %v", got)
	}
	// Static routes first, each stripping its prefix before file_server, then the app.
	routes := at(t, srv, "routes").([]any)
	if len(routes) != 3 {
		t.Fatalf("routes = %v, want 2 static + app", routes)
	}
	for i, tc := range []struct{ prefix, dir string }{{"/static", static1}, {"/media", static2}} {
		r := routes[i]
		if got := at(t, r, "match", 0, "path", 0); got != tc.prefix+"/*" {
			t.Errorf("static route %d matches %v, want %s/*", i, got, tc.prefix)
		}
		if at(t, r, "handle", 0, "handler") != "rewrite" || at(t, r, "handle", 0, "strip_path_prefix") != tc.prefix ||
			at(t, r, "handle", 1, "handler") != "file_server" || at(t, r, "handle", 1, "root") != tc.dir ||
			at(t, r, "terminal") != true {
			t.Errorf("static route %d = %v", i, r)
		}
	}
	if at(t, routes[2], "handle", 0, "handler") != "wsgi" {
		t.Errorf("last route = %v, want the app", routes[2])
	}
	// --access-logfile -: access log on, to stdout, out of the default log.
	if srv["logs"] == nil {
		t.Errorf("--access-logfile must turn the server's access log on")
	}
	if at(t, cfg, "logging", "logs", "access", "writer", "output") != "stdout" ||
		at(t, cfg, "logging", "logs", "access", "include", 0) != "http.log.access" ||
		at(t, cfg, "logging", "logs", "default", "exclude", 0) != "http.log.access" ||
		at(t, cfg, "logging", "logs", "default", "level") != "WARN" {
		t.Errorf("logging = %v", cfg["logging"])
	}
	if at(t, cfg, "admin", "listen") != "127.0.0.1:2999" {
		t.Errorf("admin = %v", cfg["admin"])
	}
}

func TestWSGIServerAliasesAndForms(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		key  string // handler key, or "listen"
		want any
	}{
		{[]string{"--workers", "3"}, nil, "workers", 3.0},
		{[]string{"-w3"}, nil, "workers", 3.0},
		{nil, map[string]string{"WEB_CONCURRENCY": "5"}, "workers", 5.0},
		{[]string{"-w", "2"}, map[string]string{"WEB_CONCURRENCY": "5"}, "workers", 2.0}, // the flag wins
		{[]string{"-t", "30"}, nil, "timeout", 30e9},
		{[]string{"--timeout", "2.5"}, nil, "timeout", 2.5e9},
		{[]string{"--timeout", "1m30s"}, nil, "timeout", 90e9},
		{[]string{"--timeout", "0"}, nil, "timeout", 0.0}, // 0: no deadline (Gunicorn's meaning)
		{[]string{"--graceful-timeout", "10"}, nil, "graceful_timeout", 10e9},
		{[]string{"--listen", ":8080"}, nil, "listen", ":8080"},
		{[]string{"-l", "127.0.0.1:8081"}, nil, "listen", "127.0.0.1:8081"},
		{[]string{"--bind", "[::1]:8082"}, nil, "listen", "[::1]:8082"},
		{[]string{"-b", "0.0.0.0"}, nil, "listen", "0.0.0.0:8000"}, // Gunicorn: a bare host is port 8000
		{[]string{"-b", "unix:/run/app.sock"}, nil, "listen", "unix//run/app.sock"},
		{[]string{"-b", ":9000", "--listen", ":9000"}, nil, "listen", ":9000"},
		{nil, map[string]string{"PORT": "5000"}, "listen", "0.0.0.0:5000"}, // Gunicorn and Heroku
		{[]string{"-b", ":7000"}, map[string]string{"PORT": "5000"}, "listen", ":7000"},
	} {
		cfg := mustWSGIServer(t, tc.env, append(tc.args, "app")...)
		var got any
		if tc.key == "listen" {
			got = at(t, server(t, cfg), "listen", 0)
		} else {
			got = wsgiHandler(t, cfg)[tc.key]
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q env %v: %s = %#v, want %#v", tc.args, tc.env, tc.key, got, tc.want)
		}
	}
}

func TestWSGIServerDomain(t *testing.T) {
	static := t.TempDir()
	cfg := mustWSGIServer(t, nil, "--domain", "example.com", "--static", "/static/="+static, "app")
	srv := server(t, cfg)
	if got := at(t, srv, "listen", 0); got != ":443" {
		t.Errorf("listen = %v, want :443", got)
	}
	if srv["automatic_https"] != nil {
		t.Errorf("automatic_https = %v: must stay on (certificates and redirects)", srv["automatic_https"])
	}
	routes := at(t, srv, "routes").([]any)
	if len(routes) != 1 || at(t, routes[0], "match", 0, "host", 0) != "example.com" || at(t, routes[0], "terminal") != true {
		t.Fatalf("routes = %v, want one route matching host example.com", routes)
	}
	sub := at(t, routes[0], "handle", 0)
	if at(t, sub, "handler") != "subroute" || at(t, sub, "routes", 0, "handle", 1, "handler") != "file_server" ||
		at(t, sub, "routes", 1, "handle", 0, "handler") != "wsgi" {
		t.Errorf("subroute = %v, want static then app", sub)
	}

	// Explicit listener with a domain; an http:// domain is plain HTTP with the host matcher.
	cfg = mustWSGIServer(t, nil, "-d", "example.com", "--listen", ":8443", "app")
	if got := at(t, server(t, cfg), "listen", 0); got != ":8443" {
		t.Errorf("listen = %v", got)
	}
	for _, d := range []string{"http://example.com", "example.com:80"} {
		srv = server(t, mustWSGIServer(t, nil, "--domain", d, "app"))
		if at(t, srv, "listen", 0) != ":80" || at(t, srv, "automatic_https", "disable") != true ||
			at(t, srv, "routes", 0, "match", 0, "host", 0) != "example.com" {
			t.Errorf("--domain %s: %v", d, srv)
		}
	}
	cfg = mustWSGIServer(t, nil, "--domain", "example.com:8443", "app")
	if at(t, server(t, cfg), "listen", 0) != ":8443" || server(t, cfg)["automatic_https"] != nil {
		t.Errorf("--domain example.com:8443: %v", server(t, cfg))
	}
}

func TestWSGIServerLogsAndAdmin(t *testing.T) {
	cfg := mustWSGIServer(t, nil, "--access-log", "app")
	if server(t, cfg)["logs"] == nil || cfg["logging"] != nil {
		t.Errorf("--access-log: server logs %v, logging %v (want the access log in Caddy's default log)", server(t, cfg)["logs"], cfg["logging"])
	}
	file := filepath.Join(t.TempDir(), "access.log")
	cfg = mustWSGIServer(t, nil, "--access-logfile", file, "app")
	if at(t, cfg, "logging", "logs", "access", "writer", "output") != "file" ||
		at(t, cfg, "logging", "logs", "access", "writer", "filename") != file || server(t, cfg)["logs"] == nil {
		t.Errorf("--access-logfile %s: %v", file, cfg["logging"])
	}
	cfg = mustWSGIServer(t, nil, "--log-level", "debug", "app")
	if at(t, cfg, "logging", "logs", "default", "level") != "DEBUG" || server(t, cfg)["logs"] != nil {
		t.Errorf("--log-level debug: %v", cfg["logging"])
	}
	cfg = mustWSGIServer(t, nil, "--admin", "off", "app")
	if at(t, cfg, "admin", "disabled") != true {
		t.Errorf("--admin off: %v", cfg["admin"])
	}
}

func TestWSGIServerErrorsNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--bogus", "app"}, nil, "unknown flag: --bogus"},
		{[]string{"-k", "tornado", "app"}, nil, "-k/--worker-class \"tornado\""},
		{[]string{"-w", "four", "app"}, nil, `"-w, --workers"`},
		{[]string{"-w", "0", "app"}, nil, "--workers"},
		{[]string{"--threads", "0", "app"}, nil, "--threads"},
		{[]string{"--threads", "x", "app"}, nil, `"--threads"`},
		{[]string{"--max-requests", "-1", "app"}, nil, "--max-requests"},
		{[]string{"--max-requests-jitter", "-1", "app"}, nil, "--max-requests-jitter"},
		{[]string{"--timeout", "soon", "app"}, nil, `--timeout "soon"`},
		{[]string{"--timeout", "-3", "app"}, nil, "--timeout"},
		{[]string{"--graceful-timeout", "0", "app"}, nil, "--graceful-timeout"},
		{[]string{"-e", "NOVALUE", "app"}, nil, `-e/--env "NOVALUE"`},
		{[]string{"-e", "=x", "app"}, nil, "-e/--env"},
		{[]string{"--static", "static=" + dir, "app"}, nil, "--static"},
		{[]string{"--static", "/static/", "app"}, nil, "--static"},
		{[]string{"--static", "/=" + dir, "app"}, nil, "cannot be /"},
		{[]string{"--static", "/s/=" + file, "app"}, nil, "is not a directory"},
		{[]string{"--static", "/s/=" + filepath.Join(dir, "missing"), "app"}, nil, "is not a directory"},
		{[]string{"--env-file", filepath.Join(dir, "missing.env"), "app"}, nil, "--env-file: env_file: open"},
		{[]string{"--x-accel-root", file, "app"}, nil, "--x-accel-root"},
		{[]string{"-b", "fd://3", "app"}, nil, "-b"},
		{[]string{"-b", "host:notaport", "app"}, nil, "--listen/-b"},
		{[]string{"-b", ":1", "--listen", ":2", "app"}, nil, "disagree"},
		{[]string{"--domain", "example.com/path", "app"}, nil, "--domain"},
		{[]string{"--log-level", "loud", "app"}, nil, "--log-level"},
		{[]string{"--admin", "not an address:x", "app"}, nil, "--admin"},
		{nil, nil, "missing APP"},
		{[]string{"a", "b"}, nil, "one APP expected"},
		{[]string{"foo:"}, nil, "malformed app spec"},
		{[]string{"app"}, map[string]string{"WEB_CONCURRENCY": "lots"}, "WEB_CONCURRENCY"},
		{[]string{"app"}, map[string]string{"PORT": "http"}, "PORT"},
	} {
		_, err := wsgiServerRun(t, tc.env, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q env %v: error %v, want one containing %q", tc.args, tc.env, err, tc.want)
		}
	}
}

// TestWSGIServerRegistered: the subcommand is registered with Caddy, its help lists
// every flag, and its usage line names them.
func TestWSGIServerRegistered(t *testing.T) {
	c, ok := caddycmd.Commands()["wsgi-server"]
	if !ok {
		t.Fatal("wsgi-server is not registered")
	}
	cmd := &cobra.Command{Use: "wsgi-server"}
	c.CobraFunc(cmd)
	if cmd.RunE == nil {
		t.Fatal("no RunE")
	}
	help := cmd.Flags().FlagUsages()
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if !strings.Contains(help, "--"+f.Name) {
			t.Errorf("--help lacks --%s", f.Name)
		}
		if f.Name != "listen" && f.Name != "bind" && !strings.Contains(c.Usage, "--"+f.Name) &&
			!strings.Contains(c.Usage, "-"+f.Shorthand+" ") {
			t.Errorf("usage line lacks --%s", f.Name)
		}
	})
	for _, name := range []string{"workers", "bind", "threads", "timeout", "graceful-timeout", "max-requests",
		"max-requests-jitter", "chdir", "preload", "reload", "env", "access-logfile", "static", "domain", "print-config"} {
		if cmd.Flags().Lookup(name) == nil {
			t.Errorf("no --%s flag", name)
		}
	}
	for short, long := range map[string]string{"w": "workers", "b": "bind", "e": "env", "t": "timeout"} {
		if f := cmd.Flags().ShorthandLookup(short); f == nil || f.Name != long {
			t.Errorf("-%s is not --%s", short, long)
		}
	}
}

func TestWSGIServerWorkerClass(t *testing.T) {
	fs := pflag.NewFlagSet("wsgi-server", pflag.ContinueOnError)
	addWSGIServerFlags(fs)
	if err := fs.Parse([]string{"-k", "gevent", "--worker-connections", "50", "app:application"}); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := wsgiServerConfig(fs, fs.Args(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(cfg)
	if !strings.Contains(string(b), `"worker_class":"gevent"`) || !strings.Contains(string(b), `"worker_connections":50`) {
		t.Fatalf("config lacks the gevent settings: %s", b)
	}
	fs = pflag.NewFlagSet("wsgi-server", pflag.ContinueOnError)
	addWSGIServerFlags(fs)
	fs.Parse([]string{"-k", "eventlet", "app"})
	if _, _, err := wsgiServerConfig(fs, fs.Args(), func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "-k/--worker-class") {
		t.Fatalf("eventlet: %v", err)
	}
}

func asgiServerRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	fs := pflag.NewFlagSet("asgi-server", pflag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	addASGIServerFlags(fs)
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	cfg, _, err := asgiServerConfig(fs, fs.Args(), func(string) string { return "" })
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(cfg)
	return string(b), err
}

func TestASGIServerFlags(t *testing.T) {
	out, err := asgiServerRun(t, "--host", "0.0.0.0", "--port", "9001", "-w", "3", "--max-concurrency", "250", "--lifespan", "on", "main:app")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"handler":"asgi"`, `"app":"main:app"`, `"workers":3`, `"max_concurrency":250`, `"lifespan":"on"`, `"listen":["0.0.0.0:9001"]`} {
		if !strings.Contains(out, want) {
			t.Errorf("config lacks %s:\n%s", want, out)
		}
	}
	if out, err = asgiServerRun(t, "main:app"); err != nil || !strings.Contains(out, `"listen":["127.0.0.1:8000"]`) {
		t.Errorf("default listener: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--lifespan", "maybe", "main:app"}, "--lifespan"},
		{[]string{"--port", "70000", "main:app"}, "--port"},
		{[]string{"--max-concurrency", "0", "main:app"}, "--max-concurrency"},
		{[]string{"--host", "0.0.0.0", "--listen", ":9000", "main:app"}, "--host/--port"},
		{[]string{}, "caddy asgi-server"},
	} {
		if _, err := asgiServerRun(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %s", tc.args, err, tc.want)
		}
	}
	if _, err := asgiServerRun(t, "--threads", "4", "main:app"); err == nil {
		t.Error("--threads is not an asgi-server flag")
	}
	if _, err := wsgiServerRun(t, nil, "-k", "uvicorn.workers.UvicornWorker", "main:app"); err == nil || !strings.Contains(err.Error(), "caddy asgi-server") {
		t.Errorf("-k uvicorn in wsgi-server should point to asgi-server: %v", err)
	}
}

func TestExplainStartError(t *testing.T) {
	admin := fmt.Errorf("starting caddy administration endpoint: %w", &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)})
	if err := explainStartError(admin); !strings.Contains(err.Error(), "--admin") || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("admin port taken: %v", err)
	}
	listen := errors.New("loading new config: http app module: start: listening on :8000: listen tcp :8000: bind: address already in use")
	if err := explainStartError(listen); !strings.Contains(err.Error(), "--listen") {
		t.Errorf("listen address taken: %v", err)
	}
	other := errors.New("provision http: something else")
	if err := explainStartError(other); err != other {
		t.Errorf("other errors pass unchanged: %v", err)
	}
}

// TestServerFileFlags: --env-file becomes env_file (absolute paths), --x-accel-root an
// intercept handler before the app with one file_server response per header.
func TestServerFileFlags(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(dir, "app.env")
	os.WriteFile(env, []byte("A=1\n"), 0o600)
	cfg := mustWSGIServer(t, nil, "--env-file", env, "--x-accel-root", dir, "app")
	route := at(t, cfg, "apps", "http", "servers", "wsgi", "routes", 0)
	intercept := at(t, route, "handle", 0)
	if at(t, intercept, "handler") != "intercept" || at(t, route, "handle", 1, "handler") != "wsgi" {
		t.Fatalf("route: %v", route)
	}
	if got := at(t, route, "handle", 1, "env_file", 0); got != env {
		t.Errorf("env_file = %v, want %s", got, env)
	}
	for i, header := range []string{"X-Accel-Redirect", "X-Sendfile"} {
		h := at(t, intercept, "handle_response", i)
		if at(t, h, "match", "headers", header, 0) != "*" {
			t.Errorf("handle_response %d does not match %s: %v", i, header, h)
		}
		handle := at(t, h, "routes", 0, "handle").([]any)
		last := handle[len(handle)-1].(map[string]any)
		if last["handler"] != "file_server" || last["root"] != dir {
			t.Errorf("%s: last handler %v, want file_server at %s", header, last, dir)
		}
	}
	// Without the flag, the route holds the app alone.
	cfg = mustWSGIServer(t, nil, "app")
	if h := at(t, cfg, "apps", "http", "servers", "wsgi", "routes", 0, "handle").([]any); len(h) != 1 {
		t.Errorf("without --x-accel-root: %v", h)
	}
}
