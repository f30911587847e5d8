package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"go.uber.org/zap"

	"github.com/caddy-wsgi/caddy-wsgi/workerpool"
)

func TestHealthOf(t *testing.T) {
	for _, tc := range []struct {
		name   string
		st     workerpool.Stats
		code   int
		status string
	}{
		{"ready", workerpool.Stats{Workers: []workerpool.WorkerStats{{PID: 1}, {PID: 2}}}, 200, "ready"},
		{"ready even if an earlier import failed", workerpool.Stats{Failing: true, Workers: []workerpool.WorkerStats{{PID: 1}}}, 200, "ready"},
		{"starting", workerpool.Stats{}, 503, "starting"},
		{"failing", workerpool.Stats{Failing: true}, 503, "failing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, b := healthOf("p", tc.st)
			if code != tc.code || b.Status != tc.status || b.Pool != "p" || b.Workers != len(tc.st.Workers) {
				t.Errorf("healthOf = %d %+v, want %d status %s workers %d", code, b, tc.code, tc.status, len(tc.st.Workers))
			}
		})
	}
}

// testPool registers a pool in the package's live set, as Provision does. When app is
// not empty, the pool is started with python3 and the test waits until it is ready.
func testPool(t *testing.T, name, dir, app string) *poolHolder {
	t.Helper()
	cfg := workerpool.Config{App: "app:application", Chdir: dir, Workers: 1, Logger: zap.NewNop(),
		GracefulTimeout: time.Second}
	if app != "" {
		cfg.App = app
	}
	p, err := workerpool.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := newPoolHolder(name, p)
	if app != "" {
		p.Start()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if !p.WaitReady(ctx) {
			h.Destruct()
			t.Fatalf("pool %s not ready: %v", name, p.LastBootError())
		}
	}
	t.Cleanup(func() { h.Destruct() })
	return h
}

// serveHealth runs the wsgi_health handler for pool and decodes its answer.
func serveHealth(t *testing.T, pool, method string) (*httptest.ResponseRecorder, healthBody) {
	t.Helper()
	rec := httptest.NewRecorder()
	m := &WSGIHealth{Pool: pool}
	if err := m.ServeHTTP(rec, httptest.NewRequest(method, "/healthz", nil), nil); err != nil {
		t.Fatal(err)
	}
	var b healthBody
	if method != http.MethodHead {
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
			t.Fatalf("body %q: %v", rec.Body.String(), err)
		}
	}
	return rec, b
}

func TestHealthHandler(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not on PATH")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "app.py"), []byte(
		"def application(environ, start_response):\n"+
			"    start_response('200 OK', [('Content-Type', 'text/plain')])\n"+
			"    return [b'ok']\n"), 0o644)

	// No pool at all.
	rec, b := serveHealth(t, "", "GET")
	if rec.Code != 503 || b.Status != "unknown" || rec.Header().Get("Retry-After") == "" {
		t.Errorf("no pool: %d %+v Retry-After %q, want 503 unknown with Retry-After", rec.Code, b, rec.Header().Get("Retry-After"))
	}

	// A pool that has no worker yet (not started).
	testPool(t, "cold", dir, "")
	rec, b = serveHealth(t, "", "GET")
	if rec.Code != 503 || b.Status != "starting" || b.Pool != "cold" || b.Workers != 0 {
		t.Errorf("cold pool: %d %+v, want 503 starting", rec.Code, b)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}

	// A ready pool next to it: without a name the handler cannot choose.
	testPool(t, "warm", dir, "app:application")
	rec, b = serveHealth(t, "", "GET")
	if rec.Code != 500 || b.Status != "ambiguous" || strings.Join(b.Pools, ",") != "cold,warm" ||
		!strings.Contains(b.Error, "wsgi_health <name>") {
		t.Errorf("two pools, no name: %d %+v, want 500 ambiguous naming cold and warm", rec.Code, b)
	}
	rec, b = serveHealth(t, "warm", "GET")
	if rec.Code != 200 || b.Status != "ready" || b.Pool != "warm" || b.Workers != 1 || rec.Header().Get("Retry-After") != "" {
		t.Errorf("warm: %d %+v, want 200 ready with 1 worker", rec.Code, b)
	}
	rec, _ = serveHealth(t, "warm", "HEAD")
	if rec.Code != 200 || rec.Body.Len() != 0 {
		t.Errorf("HEAD warm: %d with %d body bytes", rec.Code, rec.Body.Len())
	}
	rec, b = serveHealth(t, "cold", "GET")
	if rec.Code != 503 || b.Status != "starting" {
		t.Errorf("cold by name: %d %+v", rec.Code, b)
	}
	rec, b = serveHealth(t, "nope", "GET")
	if rec.Code != 503 || b.Status != "unknown" || b.Pool != "nope" {
		t.Errorf("unknown name: %d %+v, want 503 unknown", rec.Code, b)
	}

	// The admin API's answer: same body, 404 for an unknown pool.
	code, body := poolHealth("warm")
	if code != 200 || !strings.HasPrefix(string(body), `{"status":"ready","pool":"warm","workers":1}`) {
		t.Errorf("poolHealth(warm) = %d %s", code, body)
	}
	code, body = poolHealth("nope")
	if code != 404 || !strings.Contains(string(body), `"pools":["cold","warm"]`) {
		t.Errorf("poolHealth(nope) = %d %s, want 404 listing the pools", code, body)
	}
	rec = httptest.NewRecorder()
	if err := writePoolHealth(rec, "cold"); err != nil || rec.Code != 503 || rec.Header().Get("Retry-After") != healthRetryAfter {
		t.Errorf("writePoolHealth(cold): %v %d Retry-After %q", err, rec.Code, rec.Header().Get("Retry-After"))
	}

	// A draining pool does not count: with cold draining, warm is the only one.
	for _, h := range listPools() {
		if h.name == "cold" {
			h.pool.Stop(context.Background()) // never started: at once
		}
	}
	rec, b = serveHealth(t, "", "GET")
	if rec.Code != 200 || b.Pool != "warm" {
		t.Errorf("cold draining, no name: %d %+v, want warm's 200", rec.Code, b)
	}
}

func TestHealthFailingImport(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not on PATH")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "broken.py"), []byte("raise ImportError('boom')\n"), 0o644)
	p, err := workerpool.New(workerpool.Config{App: "broken:application", Chdir: dir, Workers: 1,
		Logger: zap.NewNop(), GracefulTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h := newPoolHolder("broken", p)
	t.Cleanup(func() { h.Destruct() })
	p.Start()
	deadline := time.Now().Add(20 * time.Second)
	for {
		rec, b := serveHealth(t, "broken", "GET")
		if b.Status == "failing" {
			if rec.Code != 503 || rec.Header().Get("Retry-After") == "" || strings.Contains(rec.Body.String(), "boom") {
				t.Errorf("failing: %d %s (the site answer must not carry the traceback)", rec.Code, rec.Body.String())
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status still %q after 20s", b.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestHealthCaddyfile(t *testing.T) {
	for input, want := range map[string]string{
		"wsgi_health":                         "",
		"wsgi_health mysite.wsgi:application": "mysite.wsgi:application",
	} {
		m := new(WSGIHealth)
		if err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil || m.Pool != want {
			t.Errorf("%q: pool %q err %v, want %q", input, m.Pool, err, want)
		}
	}
	for _, input := range []string{"wsgi_health a b", "wsgi_health {\n\tx\n}"} {
		m := new(WSGIHealth)
		if err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err == nil {
			t.Errorf("%q: no error", input)
		}
	}
}

// TestHealthDirectiveOrder: a bare `wsgi_health /healthz` in a site with `wsgi` comes
// first, so the health check is not swallowed by the app.
func TestHealthDirectiveOrder(t *testing.T) {
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(`:8080 {
	wsgi app:application
	wsgi_health /healthz
	handle /h2 {
		wsgi_health
	}
}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	health, app := strings.Index(s, `"handler":"wsgi_health"`), strings.Index(s, `"handler":"wsgi"`)
	if health < 0 || app < 0 || health > app {
		t.Errorf("wsgi_health must come before wsgi in the adapted config:\n%s", s)
	}
	if !strings.Contains(s, `"path":["/healthz"]`) || !strings.Contains(s, `"path":["/h2"]`) {
		t.Errorf("adapted config lacks the matchers:\n%s", s)
	}

	// The deployment layout: static files and a catch-all handle around the app.
	out, _, err = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(`:8080 {
	handle_path /static/* {
		respond "a static file"
	}
	handle {
		wsgi app:application
	}
	wsgi_health /healthz
}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	s = string(out)
	health, static := strings.Index(s, `"handler":"wsgi_health"`), strings.Index(s, `"handler":"static_response"`)
	if health < 0 || static < 0 || health > static {
		t.Errorf("wsgi_health must come before the handle blocks:\n%s", s)
	}
}
