//go:build linux

package integration

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Harness: the framework apps (Flask, Django) and the server commands as many tests start them.

// ecoStart runs caddy with args in dir (the repository root when empty) with extra env, on
// the ports of a fresh Caddy, and waits until the admin endpoint and the HTTP port answer.
func ecoStart(t *testing.T, dir string, env []string, args func(c *Caddy) []string) *Caddy {
	t.Helper()
	c := newCaddy(t)
	c.Env = append(c.Env, env...)
	if dir == "" {
		dir = repoRoot()
	}
	tmp := c.Dir
	c.Dir = dir
	a := args(c)
	c.start(t, a)
	c.Dir = tmp
	if err := c.waitReady(30*time.Second, true); err != nil {
		t.Fatalf("caddy %s did not become ready: %v\nlog:\n%s", strings.Join(a, " "), err, tail(c.Logs(), 20000))
	}
	return c
}

// fwDo sends req with client and returns the response with its body read.
func fwDo(t *testing.T, client *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp, b
}

func fwRandom(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func fwJSON(t *testing.T, what string, body []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("%s: response is not JSON (%v): %.500q", what, err, body)
	}
}

// fwQuote quotes a path for a Caddyfile token.
func fwQuote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

// djangoPrepare makes a fresh SQLite database with a superuser and a collected STATIC_ROOT
// (whose admin/css/base.css carries a marker) in a temp dir.
func djangoPrepare(t *testing.T) (db, static string, env []string) {
	t.Helper()
	tmp := t.TempDir()
	db = filepath.Join(tmp, "db.sqlite3")
	static = filepath.Join(tmp, "static")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DJANGO_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"DJANGO_SETTINGS_MODULE=mysite.settings",
		"DJANGO_DB_PATH="+db,
		"DJANGO_STATIC_ROOT="+static,
		"DJANGO_SECRET_KEY=django-test-secret-key-for-caddy-wsgi-integration-tests-0123456789",
		"DJANGO_SUPERUSER_USERNAME="+djangoAdminUser,
		"DJANGO_SUPERUSER_EMAIL=admin@example.com",
		"DJANGO_SUPERUSER_PASSWORD="+djangoAdminPassword,
	)
	djangoManage(t, env, "migrate", "--noinput", "-v", "0")
	djangoManage(t, env, "createsuperuser", "--noinput")
	djangoManage(t, env, "collectstatic", "--noinput", "-v", "0")

	// Mark the collected copy of the admin CSS: only a server reading STATIC_ROOT (Caddy's
	// file_server) can return these bytes; Django's staticfiles app would read the original.
	css := filepath.Join(static, "admin", "css", "base.css")
	f, err := os.OpenFile(css, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("collectstatic did not produce %s: %v", css, err)
	}
	fmt.Fprintf(f, "\n/* collected copy, marker %d */\n", time.Now().UnixNano())
	f.Close()
	return db, static, env
}

// caddyReload runs `caddy reload` with a Caddyfile written to the test dir.
func caddyReload(t *testing.T, c *Caddy, name, caddyfile string) (string, error) {
	t.Helper()
	path := filepath.Join(c.Dir, name)
	if err := os.WriteFile(path, []byte(c.expandPlaceholders(t, caddyfile)), 0o644); err != nil {
		t.Fatal(err)
	}
	return runCaddyCmd(t, c.Dir, "reload", "--config", path, "--adapter", "caddyfile", "--address", c.Admin)
}
