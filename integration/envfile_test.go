//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// envWorker asks testdata/apps/envshow.py which values the workers see.
func envWorker(t *testing.T, url string, keys ...string) map[string]*string {
	t.Helper()
	resp, body := get(t, url+"/?k="+strings.Join(keys, ","))
	var got map[string]*string
	if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET env: %d %q %v", resp.StatusCode, body, err)
	}
	return got
}

func deref(p *string) string {
	if p == nil {
		return "<unset>"
	}
	return *p
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestEnvFile: env_file files (dotenv syntax) reach the workers' environment in order,
// `env` overrides them, a rolling restart picks up an edit, and a missing or malformed
// file is refused at load with its line number (Caddyfile and JSON configs) while the
// running config keeps serving.
func TestEnvFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.env"), filepath.Join(dir, "b.env")
	writeFile(t, a, "# base settings\nexport FROM_A=yes\nSHARED=from-a\nQUOTED=\"two words # not a comment\"\nSINGLE='$HOME stays'\n")
	writeFile(t, b, "SHARED=from-b # the later file wins\nOVERRIDE=file\n")
	site := func(files string) string {
		return globalBlock() + `http://127.0.0.1:{PORT} {
	wsgi envshow {
		python {PYTHON}
		chdir {APPS}
		workers 1
		name envfile
		env_file ` + files + `
		env OVERRIDE caddyfile
	}
}
`
	}
	c := startCaddy(t, site(a+" "+b))
	waitStatus(t, c.URL+"/?k=X", 200, 30*time.Second)
	keys := []string{"FROM_A", "SHARED", "QUOTED", "SINGLE", "OVERRIDE"}
	want := map[string]string{"FROM_A": "yes", "SHARED": "from-b", "QUOTED": "two words # not a comment", "SINGLE": "$HOME stays", "OVERRIDE": "caddyfile"}
	got := envWorker(t, c.URL, keys...)
	for _, k := range keys {
		if deref(got[k]) != want[k] {
			t.Errorf("%s = %s, want %q", k, deref(got[k]), want[k])
		}
	}

	// Edit the file, restart the workers: the new value is there without a reload.
	writeFile(t, b, "SHARED=edited\n")
	if code, body, err := adminDo(c, "POST", "/wsgi/pools/envfile/restart", nil); err != nil || code != 200 {
		t.Fatalf("restart: %d %s %v", code, body, err)
	}
	if got := envWorker(t, c.URL, "SHARED", "OVERRIDE"); deref(got["SHARED"]) != "edited" || deref(got["OVERRIDE"]) != "caddyfile" {
		t.Errorf("after an edit and a restart: SHARED=%s OVERRIDE=%s", deref(got["SHARED"]), deref(got["OVERRIDE"]))
	}

	// Refused at load: a missing file, a malformed one (the Caddyfile's line and the
	// file's), and the same malformed file in a JSON config (checked at Provision).
	bad := filepath.Join(dir, "bad.env")
	writeFile(t, bad, "GOOD=1\n\nnot a variable\n")
	for _, tc := range []struct{ files, want string }{
		{filepath.Join(dir, "missing.env"), "missing.env: no such file or directory"},
		{bad, bad + ": line 3: expected KEY=VALUE"},
	} {
		out, err := caddyReload(t, c, "Caddyfile.bad", site(tc.files))
		if err == nil || !strings.Contains(out, tc.want) || !strings.Contains(out, "Caddyfile.bad:12") {
			t.Errorf("reload with env_file %s: err %v, want %q at Caddyfile.bad:12 in:\n%q", tc.files, err, tc.want, out)
		}
	}
	code, cfg, err := adminDo(c, "GET", "/config/", nil)
	if err != nil || code != 200 || !strings.Contains(string(cfg), b) {
		t.Fatalf("GET /config/: %d %v %.300s", code, err, cfg)
	}
	code, body, err := adminDo(c, "POST", "/load", []byte(strings.ReplaceAll(string(cfg), b, bad)))
	if err != nil || code == 200 || !strings.Contains(string(body), "line 3") {
		t.Errorf("POST /load with a malformed env file: %d %s %v", code, body, err)
	}
	// The running config was kept.
	if got := envWorker(t, c.URL, "SHARED"); deref(got["SHARED"]) != "edited" {
		t.Errorf("after the refused loads: SHARED=%s", deref(got["SHARED"]))
	}
}

// TestServerCommandsEnvFileAndXAccel: `caddy wsgi-server` and `caddy asgi-server` with
// --env-file (the app reads its private directory from it) and --x-accel-root.
func TestServerCommandsEnvFileAndXAccel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	private := filepath.Join(dir, "private")
	os.MkdirAll(private, 0o755)
	writeFile(t, filepath.Join(private, "report.pdf"), "%PDF-1.4 protected")
	envFile := filepath.Join(dir, "app.env")
	writeFile(t, envFile, "export PRIVATE_DIR='"+private+"'\n")
	for _, tc := range []struct{ command, spec string }{
		{"wsgi-server", "sendfile:application"},
		{"asgi-server", "sendfile:asgi_app"},
	} {
		c := ecoStart(t, "", nil, func(c *Caddy) []string {
			return []string{tc.command, "--chdir", appsDir(), "-w", "1", "--env-file", envFile,
				"--x-accel-root", private, "-b", fmt.Sprintf("127.0.0.1:%d", c.Port), "--admin", c.Admin, tc.spec}
		})
		waitStatus(t, c.URL+"/ping", 200, 30*time.Second)
		for _, how := range []string{"accel", "sendfile"} {
			resp, body := get(t, c.URL+"/"+how+"?f=report.pdf")
			if resp.StatusCode != 200 || string(body) != "%PDF-1.4 protected" || resp.Header.Get("Etag") == "" ||
				resp.Header.Get("X-Accel-Redirect") != "" || resp.Header.Get("X-Sendfile") != "" {
				t.Errorf("%s %s: %d %q %v", tc.command, how, resp.StatusCode, body, resp.Header)
			}
			resp, body = do(t, "GET", c.URL+"/"+how+"?f=report.pdf", map[string]string{"Range": "bytes=0-3"}, nil)
			if resp.StatusCode != 206 || string(body) != "%PDF" {
				t.Errorf("%s %s with a Range: %d %q", tc.command, how, resp.StatusCode, body)
			}
			resp, _ = get(t, c.URL+"/"+how+"?f=../app.env")
			if resp.StatusCode != 404 {
				t.Errorf("%s %s outside the root: %d, want 404", tc.command, how, resp.StatusCode)
			}
		}
		c.Stop(t)
	}
}
