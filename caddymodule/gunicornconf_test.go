package caddymodule

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// gunicornRun is wsgiServerRun that also returns what the Gunicorn sources said. The
// config files are read by python3 from PATH (or --python).
func gunicornRun(t *testing.T, env map[string]string, args ...string) (map[string]any, *gunicornConf, error) {
	t.Helper()
	fs := pflag.NewFlagSet("wsgi-server", pflag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	addWSGIServerFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	cfg, sum, err := wsgiServerConfig(fs, fs.Args(), func(k string) string { return env[k] })
	if err != nil {
		return nil, nil, err
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out, sum.gunicorn, nil
}

func writeConf(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestShellWords(t *testing.T) {
	for in, want := range map[string][]string{
		`-w 4  --bind=0.0.0.0:80`:            {"-w", "4", "--bind=0.0.0.0:80"},
		`-e 'A=two words' -e "B=\"q\" $x"`:   {"-e", "A=two words", "-e", `B="q" $x`},
		`--name a\ b  ''`:                    {"--name", "a b", ""},
		"\t-k\tgevent\n":                     {"-k", "gevent"},
		`-e "C=it's"'"'"s"`:                  {"-e", `C=it's"s`},
		`--log-level="debug"x`:               {"--log-level=debugx"},
		``:                                   nil,
		`--access-logfile -`:                 {"--access-logfile", "-"},
		`-e A=\'x\'`:                         {"-e", "A='x'"},
		`--chdir "/srv/my app" app:create()`: {"--chdir", "/srv/my app", "app:create()"},
	} {
		got, err := shellWords(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("shellWords(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`-e 'open`, `-e "open`} {
		if _, err := shellWords(bad); err == nil {
			t.Errorf("shellWords(%q): no error", bad)
		}
	}
}

func TestParseGunicornCmdArgs(t *testing.T) {
	got, warnings, err := parseGunicornCmdArgs(`-w4 --bind=0.0.0.0:9000 -b unix:/run/a.sock -e A=1 --env "B=two words" ` +
		`--preload --no-sendfile -t 30 --worker-tmp-dir /dev/shm --frobnicate 7 --also-unknown myapp:app --limit-request-field_size 100`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"workers": "4", "bind": []string{"0.0.0.0:9000", "unix:/run/a.sock"}, "raw_env": []string{"A=1", "B=two words"},
		"preload_app": true, "sendfile": false, "timeout": "30", "worker_tmp_dir": "/dev/shm",
		"limit_request_field_size": "100",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}
	if len(warnings) != 2 || !strings.Contains(warnings[0], "--frobnicate") || !strings.Contains(warnings[1], "--also-unknown") {
		t.Errorf("warnings = %q, want one for --frobnicate and one for --also-unknown", warnings)
	}
	for _, bad := range []string{"-w", "--preload=yes", `-e "x`} {
		if _, _, err := parseGunicornCmdArgs(bad); err == nil || !strings.Contains(err.Error(), "GUNICORN_CMD_ARGS") {
			t.Errorf("%q: err = %v, want a GUNICORN_CMD_ARGS error", bad, err)
		}
	}
}

// TestGunicornPrecedence: command line > GUNICORN_CMD_ARGS > config file > defaults
// (WEB_CONCURRENCY, PORT), as in Gunicorn; raw_env merges per variable.
func TestGunicornPrecedence(t *testing.T) {
	conf := writeConf(t, "gunicorn.conf.py", `
import os
workers = 2
timeout = 40
graceful_timeout = 7
bind = os.environ.get("NO_SUCH_VAR_15C", "127.0.0.1:9001")
max_requests = 100
raw_env = ["A=file", "B=file"]
loglevel = "debug"
wsgi_app = "fromfile:app"
helper_variable = {"not": "a setting"}
`)
	env := map[string]string{"GUNICORN_CMD_ARGS": "--timeout 50 -w 3 --graceful-timeout 8 -e C=env", "WEB_CONCURRENCY": "9", "PORT": "7000"}
	cfg, g, err := gunicornRun(t, env, "-c", conf, "-w", "4", "-e", "B=cli", "--graceful-timeout", "9")
	if err != nil {
		t.Fatal(err)
	}
	h := wsgiHandler(t, cfg)
	if h["app"] != "fromfile:app" {
		t.Errorf("app = %v, want wsgi_app from the file", h["app"])
	}
	if h["workers"] != 4.0 {
		t.Errorf("workers = %v, want 4 (command line over GUNICORN_CMD_ARGS, file and WEB_CONCURRENCY)", h["workers"])
	}
	if h["timeout"] != 50e9 {
		t.Errorf("timeout = %v, want 50s (GUNICORN_CMD_ARGS over the file)", h["timeout"])
	}
	if h["graceful_timeout"] != 9e9 {
		t.Errorf("graceful_timeout = %v, want 9s (command line)", h["graceful_timeout"])
	}
	if h["max_requests"] != 100.0 {
		t.Errorf("max_requests = %v, want 100 (file)", h["max_requests"])
	}
	wantEnv := map[string]any{"A": "file", "B": "cli", "C": "env"}
	if !reflect.DeepEqual(h["env"], wantEnv) {
		t.Errorf("env = %v, want %v", h["env"], wantEnv)
	}
	if got := at(t, server(t, cfg), "listen", 0); got != "127.0.0.1:9001" {
		t.Errorf("listen = %v, want the file's bind over PORT", got)
	}
	if got := at(t, cfg, "logging", "logs", "default", "level"); got != "DEBUG" {
		t.Errorf("log level = %v", got)
	}
	if _, ok := h["hooks"]; ok {
		t.Errorf("hooks = %v for a file without hooks", h["hooks"])
	}
	if len(g.warnings) != 0 {
		t.Errorf("warnings = %q, want none", g.warnings)
	}

	// The APP argument wins over wsgi_app; -b over bind; without -w, GUNICORN_CMD_ARGS.
	cfg, _, err = gunicornRun(t, env, "-c", conf, "-b", "127.0.0.1:9002", "cli:app")
	if err != nil {
		t.Fatal(err)
	}
	if h := wsgiHandler(t, cfg); h["app"] != "cli:app" || h["workers"] != 3.0 {
		t.Errorf("app, workers = %v, %v; want cli:app, 3", h["app"], h["workers"])
	}
	if got := at(t, server(t, cfg), "listen", 0); got != "127.0.0.1:9002" {
		t.Errorf("listen = %v, want -b", got)
	}
}

// TestGunicornDefaultConfigFile: without -c, ./gunicorn.conf.py is read, as by Gunicorn;
// -c in GUNICORN_CMD_ARGS names another file.
func TestGunicornDefaultConfigFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gunicorn.conf.py"), []byte("workers = 6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := writeConf(t, "prod.py", "workers = 7\n")
	t.Chdir(dir)
	cfg, g, err := gunicornRun(t, nil, "app:app")
	if err != nil {
		t.Fatal(err)
	}
	if w := wsgiHandler(t, cfg)["workers"]; w != 6.0 || g.file != "gunicorn.conf.py" {
		t.Errorf("workers = %v, file %q; want 6 from ./gunicorn.conf.py", w, g.file)
	}
	cfg, _, err = gunicornRun(t, map[string]string{"GUNICORN_CMD_ARGS": "-c " + other}, "app:app")
	if err != nil {
		t.Fatal(err)
	}
	if w := wsgiHandler(t, cfg)["workers"]; w != 7.0 {
		t.Errorf("workers = %v, want 7 from GUNICORN_CMD_ARGS's -c", w)
	}
}

func TestGunicornConfMapping(t *testing.T) {
	conf := writeConf(t, "gunicorn.conf.py", `
bind = ["unix:/tmp/app15c.sock"]
worker_class = "gunicorn.workers.ggevent.GeventWorker"
worker_connections = 50
max_requests_jitter = 10
preload_app = False
reload = True
chdir = "/srv"
pythonpath = "/srv/lib,/srv/vendor"
user = "www-data"
group = "www-data"
forwarded_allow_ips = "10.0.0.0/8, 192.168.1.1"
keepalive = 75
limit_request_line = 1000
limit_request_fields = 10
limit_request_field_size = 500
accesslog = "/tmp/access15c.log"
errorlog = "-"
sendfile = True
worker_tmp_dir = "/dev/shm"
proc_name = "myapp"
daemon = False

def pre_request(worker, req):
    worker.log.debug("%s %s", req.method, req.path)

def on_exit(server):
    pass
`)
	cfg, g, err := gunicornRun(t, nil, "-c", conf, "app:app")
	if err != nil {
		t.Fatal(err)
	}
	h := wsgiHandler(t, cfg)
	for k, want := range map[string]any{
		"worker_class": "gevent", "worker_connections": 50.0, "max_requests_jitter": 10.0, "reload": true,
		"chdir": "/srv", "pythonpath": []any{"/srv/lib", "/srv/vendor"}, "user": "www-data", "group": "www-data",
		"hooks": conf,
	} {
		if !reflect.DeepEqual(h[k], want) {
			t.Errorf("%s = %#v, want %#v", k, h[k], want)
		}
	}
	if _, ok := h["preload"]; ok {
		t.Errorf("preload set from preload_app = False")
	}
	srv := server(t, cfg)
	if got := at(t, srv, "listen", 0); got != "unix//tmp/app15c.sock" {
		t.Errorf("listen = %v", got)
	}
	if got := at(t, srv, "trusted_proxies", "ranges"); !reflect.DeepEqual(got, []any{"10.0.0.0/8", "192.168.1.1"}) {
		t.Errorf("trusted_proxies = %v", got)
	}
	if got := srv["idle_timeout"]; got != 75e9 {
		t.Errorf("idle_timeout = %v, want 75s", got)
	}
	if got := srv["max_header_bytes"]; got != float64(1000+10*502) {
		t.Errorf("max_header_bytes = %v", got)
	}
	if got := at(t, cfg, "logging", "logs", "access", "writer", "filename"); got != "/tmp/access15c.log" {
		t.Errorf("access log file = %v", got)
	}
	// One warning per setting or hook without a counterpart; none for errorlog "-",
	// sendfile, daemon = False, which are what happens anyway.
	var names []string
	for _, w := range g.warnings {
		names = append(names, strings.Fields(w)[0])
	}
	want := []string{"on_exit", "sendfile", "worker_tmp_dir", "proc_name"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("warnings for %q, want %q:\n%s", names, want, strings.Join(g.warnings, "\n"))
	}
	for _, w := range g.warnings {
		if !strings.Contains(w, ": ") || strings.HasSuffix(w, ": ") {
			t.Errorf("warning %q says nothing to do instead", w)
		}
	}
}

func TestGunicornConfErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		file, text string
		args       []string
		want       []string
	}{
		"syntax": {"gunicorn.conf.py", "workers = 2\nbind = '0.0.0.0:8000\ntimeout = 3\n", nil,
			[]string{"gunicorn.conf.py", "line 2", "SyntaxError"}},
		"exception": {"gunicorn.conf.py", "import os\n\nworkers = int(os.environ['NO_SUCH_VAR_15C'])\n", nil,
			[]string{"line 3", "KeyError: 'NO_SUCH_VAR_15C'", "Traceback"}},
		"bad value": {"gunicorn.conf.py", "workers = 'many'\n", nil, []string{`workers = "many"`, "gunicorn.conf.py"}},
		"two binds": {"gunicorn.conf.py", "bind = ['127.0.0.1:1', '127.0.0.1:2']\n", nil, []string{"bind", "one address"}},
		"object":    {"gunicorn.conf.py", "import decimal\ntimeout = decimal.Decimal(3)\n", nil, []string{"timeout = Decimal('3')"}},
		"caddyfile": {"Caddyfile", ":80\n", nil, []string{"caddy run --config"}},
		"uvicorn":   {"gunicorn.conf.py", "worker_class = 'uvicorn.workers.UvicornWorker'\n", nil, []string{"asgi-server"}},
		"missing":   {"", "", []string{"-c", "/nonexistent/gunicorn.conf.py"}, []string{"/nonexistent/gunicorn.conf.py", "no such file"}},
	} {
		t.Run(name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = []string{"-c", writeConf(t, tc.file, tc.text)}
			}
			_, _, err := gunicornRun(t, nil, append(args, "app:app")...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestHooksSpec(t *testing.T) {
	wd, _ := os.Getwd()
	for in, want := range map[string]string{
		"myhooks": "myhooks", "pkg.hooks": "pkg.hooks", "python:pkg.conf": "python:pkg.conf",
		"gunicorn.conf.py": filepath.Join(wd, "gunicorn.conf.py"), "file:conf/g.py": filepath.Join(wd, "conf/g.py"),
		"/etc/app/gunicorn.conf.py": "/etc/app/gunicorn.conf.py", "": "",
	} {
		if got := hooksSpec(in); got != want {
			t.Errorf("hooksSpec(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestGunicornConfPythons reads a config file with the oldest and newest Pythons the
// runtime supports (the reader runs in the app's interpreter, whichever it is).
func TestGunicornConfPythons(t *testing.T) {
	root := os.Getenv("PYENV_ROOT")
	if root == "" {
		root = filepath.Join(os.Getenv("HOME"), ".pyenv")
	}
	conf := writeConf(t, "gunicorn.conf.py", "import multiprocessing\nworkers = multiprocessing.cpu_count() + 40\nbind = ['127.0.0.1:9100']\ndef post_fork(server, worker):\n    pass\n")
	for _, v := range []string{"3.9", "3.13"} {
		matches, _ := filepath.Glob(filepath.Join(root, "versions", v+".*", "bin", "python3"))
		if len(matches) == 0 {
			t.Fatalf("no Python %s under %s", v, root)
		}
		cfg, g, err := gunicornRun(t, nil, "-c", conf, "--python", matches[len(matches)-1], "app:app")
		if err != nil {
			t.Fatalf("Python %s: %v", v, err)
		}
		if w := wsgiHandler(t, cfg)["workers"].(float64); w < 41 || g.python != matches[len(matches)-1] || g.hooks != conf {
			t.Errorf("Python %s: workers %v, read by %s, hooks %q", v, w, g.python, g.hooks)
		}
	}
}
