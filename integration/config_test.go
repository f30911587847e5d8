//go:build linux

package integration

// Configuration: Caddyfile adaptation, errors with line numbers, JSON through the admin API,
// app spec forms, interpreter options, and other Python versions.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCaddyfile expands placeholders and writes the Caddyfile into a fresh directory (no
// caddy started). It returns the Caddy (ports, Dir) and the path.
func writeCaddyfile(t *testing.T, cf string) (*Caddy, string) {
	t.Helper()
	c := newCaddy(t)
	path := filepath.Join(c.Dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(c.expandPlaceholders(t, cf)), 0o644); err != nil {
		t.Fatal(err)
	}
	return c, path
}

// adapt runs `caddy adapt` and returns stdout, stderr and the error.
func adapt(t *testing.T, dir, path string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBinary(t), "adapt", "--config", path, "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "d"), "XDG_CONFIG_HOME="+filepath.Join(dir, "c"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// findHandlers returns every JSON object with "handler": name, anywhere in v.
func findHandlers(v any, name string) []map[string]any {
	var out []map[string]any
	switch x := v.(type) {
	case map[string]any:
		if x["handler"] == name {
			out = append(out, x)
		}
		for _, e := range x {
			out = append(out, findHandlers(e, name)...)
		}
	case []any:
		for _, e := range x {
			out = append(out, findHandlers(e, name)...)
		}
	}
	return out
}

func TestAdaptCaddyfile(t *testing.T) {
	t.Parallel()
	c, path := writeCaddyfile(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	wsgi mypkg.app:make_app() {
		python /usr/bin/python3
		venv {TMP}/venv
		chdir {APPS}
		pythonpath {TMP}/a {TMP}/b
		pythonpath {TMP}/c
		env FOO bar
		env SPACED "x y"
		workers 3
		threads 4
		queue_timeout 2500ms
		max_queue 17
		buffer_body 2MiB
		script_name /mount
	}
}
`)
	out, stderr, err := adapt(t, c.Dir, path)
	if err != nil {
		t.Fatalf("caddy adapt: %v\n%s\n%s", err, out, stderr)
	}
	if !strings.Contains(out, `"handler":"wsgi"`) {
		t.Errorf(`adapt output lacks "handler":"wsgi": %s`, out)
	}
	var cfg any
	if err := json.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatalf("adapt output is not JSON: %v\n%s", err, out)
	}
	hs := findHandlers(cfg, "wsgi")
	if len(hs) != 1 {
		t.Fatalf("found %d wsgi handlers in %s", len(hs), out)
	}
	h := hs[0]
	checks := map[string]any{
		"app":         "mypkg.app:make_app()",
		"python":      "/usr/bin/python3",
		"venv":        c.Dir + "/venv",
		"chdir":       appsDir(),
		"workers":     float64(3),
		"threads":     float64(4),
		"max_queue":   float64(17),
		"buffer_body": float64(2 << 20),
		"script_name": "/mount",
	}
	for k, want := range checks {
		if got, ok := h[k]; !ok || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("wsgi handler %s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	if pp, _ := json.Marshal(h["pythonpath"]); string(pp) != fmt.Sprintf(`[%q,%q,%q]`, c.Dir+"/a", c.Dir+"/b", c.Dir+"/c") {
		t.Errorf("pythonpath = %s", pp)
	}
	if env, _ := json.Marshal(h["env"]); string(env) != `{"FOO":"bar","SPACED":"x y"}` {
		t.Errorf("env = %s, want {\"FOO\":\"bar\",\"SPACED\":\"x y\"}", env)
	}
	switch qt := h["queue_timeout"].(type) {
	case float64:
		if qt != 2.5e9 {
			t.Errorf("queue_timeout = %v ns, want 2.5e9", qt)
		}
	case string:
		if d, err := time.ParseDuration(qt); err != nil || d != 2500*time.Millisecond {
			t.Errorf("queue_timeout = %q, want 2.5s", qt)
		}
	default:
		t.Errorf("queue_timeout = %#v", h["queue_timeout"])
	}
}

func TestAdaptRejectsMalformedAppSpec(t *testing.T) {
	t.Parallel()
	for _, spec := range []string{"foo:", ":app", `"a b"`, "foo:bar(", "a b", "foo:bar:baz", "foo-bar:app", "foo:1x"} {
		spec := spec
		t.Run(strings.ReplaceAll(spec, " ", "_"), func(t *testing.T) {
			t.Parallel()
			// the wsgi line is line 8: 5 lines of global block, a blank line, the site line
			c, path := writeCaddyfile(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	wsgi `+spec+` {
		workers 1
	}
}
`)
			out, stderr, err := adapt(t, c.Dir, path)
			if err == nil {
				t.Fatalf("caddy adapt accepted app spec %s:\n%s", spec, out)
			}
			if !strings.Contains(stderr, "Caddyfile:8") {
				t.Errorf("error does not name Caddyfile:8 (the wsgi line): %s", stderr)
			}
		})
	}
}

func TestRunRejectsMalformedAppSpec(t *testing.T) {
	t.Parallel()
	c, path := writeCaddyfile(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	wsgi foo:bar( {
		workers 1
	}
}
`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBinary(t), "run", "--config", path, "--adapter", "caddyfile")
	cmd.Dir = c.Dir
	cmd.Env = c.Env
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("caddy run kept running with a malformed app spec:\n%s", tail(string(out), 3000))
	}
	if err == nil {
		t.Fatalf("caddy run exited 0 with a malformed app spec:\n%s", out)
	}
	if !strings.Contains(string(out), "Caddyfile:8") {
		t.Errorf("error does not name Caddyfile:8: %s", tail(string(out), 3000))
	}
}

func TestAdaptRejectsUnknownSubdirective(t *testing.T) {
	t.Parallel()
	c, path := writeCaddyfile(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	wsgi probe {
		workers 1
		frobnicate_level 3
	}
}
`)
	out, stderr, err := adapt(t, c.Dir, path)
	if err == nil {
		t.Fatalf("caddy adapt accepted an unknown subdirective:\n%s", out)
	}
	if !strings.Contains(stderr, "frobnicate_level") {
		t.Errorf("error does not name the unknown subdirective: %s", stderr)
	}
	if !strings.Contains(stderr, "Caddyfile:10") {
		t.Errorf("error does not name Caddyfile:10: %s", stderr)
	}
}

func TestLoadJSONViaAdmin(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	respond "placeholder"
}
`)
	resp, body := get(t, c.URL+"/")
	if string(body) != "placeholder" {
		t.Fatalf("initial config: %d %q", resp.StatusCode, body)
	}
	cfg := map[string]any{
		"admin": map[string]any{"listen": c.Admin},
		"apps": map[string]any{
			"http": map[string]any{
				"http_port":  c.Port,
				"https_port": c.HTTPSPort,
				"servers": map[string]any{
					"srv0": map[string]any{
						"listen": []string{fmt.Sprintf("127.0.0.1:%d", c.Port)},
						"routes": []any{
							map[string]any{
								"handle": []any{
									map[string]any{
										"handler":       "wsgi",
										"app":           "probe:make_app()",
										"python":        systemPython(t),
										"chdir":         appsDir(),
										"pythonpath":    []string{c.Dir},
										"env":           map[string]string{"PROBE_TAG": "from-json"},
										"workers":       1,
										"threads":       2,
										"queue_timeout": "5s",
										"max_queue":     10,
										"buffer_body":   65536,
										"script_name":   "/json",
									},
								},
							},
						},
						"automatic_https": map[string]any{"disable": true},
					},
				},
			},
		},
	}
	b, _ := json.Marshal(cfg)
	lr, err := http.Post(c.AdminURL+"/load", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	lb := new(bytes.Buffer)
	lb.ReadFrom(lr.Body)
	lr.Body.Close()
	if lr.StatusCode != 200 {
		t.Fatalf("POST /load: %d %s", lr.StatusCode, lb)
	}
	// the new config serves the probe
	var d *probeDoc
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body, err := tryGet(c.URL+"/json/x", 10*time.Second)
		if err == nil && code == 200 && bytes.Contains(body, []byte(`"env"`)) {
			resp := &http.Response{StatusCode: code}
			d = parseProbe(t, resp, body)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the JSON config does not serve the probe: %d %v %.300s", code, err, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d.OSEnv["PROBE_TAG"] != "from-json" {
		t.Errorf("env PROBE_TAG = %q in os.environ, want from-json", d.OSEnv["PROBE_TAG"])
	}
	if !d.WSGI.Multithread || d.WSGI.Multiprocess {
		t.Errorf("multithread %v multiprocess %v, want True/False (workers 1, threads 2)", d.WSGI.Multithread, d.WSGI.Multiprocess)
	}
	if d.Env["SCRIPT_NAME"] != "/json" {
		t.Errorf("SCRIPT_NAME = %q, want /json", d.Env["SCRIPT_NAME"])
	}
	found := false
	for _, p := range d.SysPath {
		if p == c.Dir {
			found = true
		}
	}
	if !found {
		t.Errorf("pythonpath %s not on sys.path %v", c.Dir, d.SysPath)
	}
}

func TestAppSpecForms(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	handle_path /module/* {
		wsgi probe {
			python {PYTHON}
			chdir {APPS}
			workers 1
		}
	}
	handle_path /callable/* {
		wsgi probe:probe_app {
			python {PYTHON}
			chdir {APPS}
			workers 1
		}
	}
	handle_path /factory/* {
		wsgi probe:make_app() {
			python {PYTHON}
			chdir {APPS}
			workers 1
		}
	}
	handle_path /behave/* {
		wsgi behave:create_app() {
			python {PYTHON}
			chdir {APPS}
			workers 1
		}
	}
}
`)
	pids := map[int]string{}
	for _, p := range []string{"/module", "/callable", "/factory"} {
		d := getProbe(t, c.URL+p+"/x")
		if d.Env["SCRIPT_NAME"] != p || d.Env["PATH_INFO"] != "/x" {
			t.Errorf("%s: SCRIPT_NAME %q PATH_INFO %q", p, d.Env["SCRIPT_NAME"], d.Env["PATH_INFO"])
		}
		if other, dup := pids[d.Pid]; dup {
			t.Errorf("%s and %s served by the same worker %d (each wsgi handler has its own pool)", p, other, d.Pid)
		}
		pids[d.Pid] = p
	}
	resp, body := get(t, c.URL+"/behave/write")
	if resp.StatusCode != 200 || string(body) != "ABCD" {
		t.Errorf("behave:create_app(): %d %q", resp.StatusCode, body)
	}
}

func TestInterpreterOptions(t *testing.T) {
	t.Parallel()
	// a throwaway venv (no pip: fast) made from python3 on PATH
	dir := t.TempDir()
	venv := filepath.Join(dir, "venv")
	if out, err := exec.Command(systemPython(t), "-m", "venv", "--without-pip", venv).CombinedOutput(); err != nil {
		t.Fatalf("python3 -m venv: %v\n%s", err, out)
	}
	for _, d := range []string{"pp1", "pp2"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	c := startCaddy(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	wsgi probe {
		venv `+venv+`
		chdir {APPS}
		pythonpath `+dir+`/pp1 `+dir+`/pp2
		env PROBE_ONE 1
		env PROBE_TWO "two words"
		workers 1
	}
}
`)
	d := getProbe(t, c.URL+"/")
	if d.Prefix != venv {
		t.Errorf("sys.prefix = %q, want the venv %q", d.Prefix, venv)
	}
	if !strings.HasPrefix(d.Executable, venv+"/") {
		t.Errorf("sys.executable = %q, want inside %q", d.Executable, venv)
	}
	if d.Cwd != appsDir() {
		t.Errorf("cwd = %q, want chdir %q", d.Cwd, appsDir())
	}
	if len(d.SysPath) < 3 || d.SysPath[0] != appsDir() || d.SysPath[1] != dir+"/pp1" || d.SysPath[2] != dir+"/pp2" {
		t.Errorf("sys.path starts %v, want [%s %s/pp1 %s/pp2 ...]", d.SysPath, appsDir(), dir, dir)
	}
	if d.OSEnv["PROBE_ONE"] != "1" || d.OSEnv["PROBE_TWO"] != "two words" {
		t.Errorf("os.environ PROBE_*: %v", d.OSEnv)
	}
}

func TestPythonVersions(t *testing.T) {
	t.Parallel()
	for _, py := range extraPythons(t) {
		py := py
		out, err := exec.Command(py, "-c", "import sys; print('%d.%d' % sys.version_info[:2])").Output()
		if err != nil {
			t.Fatalf("%s: %v", py, err)
		}
		ver := strings.TrimSpace(string(out))
		t.Run(ver, func(t *testing.T) {
			t.Parallel()
			c := startCaddy(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	handle_path /behave/* {
		wsgi behave {
			python `+py+`
			chdir {APPS}
			env MARKER_DIR {TMP}
			workers 1
			threads 2
		}
	}
	handle {
		wsgi probe {
			python `+py+`
			chdir {APPS}
			workers 1
		}
	}
}
`)
			resp, body := post(t, c.URL+"/p?x=1", "text/plain", []byte("hello from "+ver))
			d := parseProbe(t, resp, body)
			if !strings.HasPrefix(d.Python, ver+".") {
				t.Errorf("worker runs Python %s, want %s", d.Python, ver)
			}
			if d.BodyHead != "hello from "+ver || d.Env["QUERY_STRING"] != "x=1" {
				t.Errorf("body %q QUERY_STRING %q", d.BodyHead, d.Env["QUERY_STRING"])
			}
			r, b := get(t, c.URL+"/behave/write")
			if r.StatusCode != 200 || string(b) != "ABCD" {
				t.Errorf("write(): %d %q", r.StatusCode, b)
			}
			r, b = get(t, c.URL+"/behave/stream?n=50&size=10000")
			if r.StatusCode != 200 || len(b) != 500000 {
				t.Errorf("stream: %d %d bytes", r.StatusCode, len(b))
			}
			path := filepath.Join(c.Dir, "f.bin")
			data := randomBytes(t, 1<<20)
			os.WriteFile(path, data, 0o644)
			r, b = get(t, c.URL+"/behave/file?path="+path)
			if r.StatusCode != 200 || !bytes.Equal(b, data) {
				t.Errorf("file_wrapper: %d %d bytes", r.StatusCode, len(b))
			}
		})
	}
}
