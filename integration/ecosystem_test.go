//go:build linux

package integration

// Ecosystem tests: the recipes of docs/recipes.md run through a real caddy: `caddy
// wsgi-server` as a newcomer types it, the Bottle example, Django media files and HTTPS
// without SECURE_PROXY_SSL_HEADER, the wsgi_health endpoint; and the deployment files of
// deploy/: the Dockerfile's build stage run on the host (no Docker engine here), the
// image's Caddyfile serving the app, the Kubernetes manifests against the API schemas
// (kubernetes-validate, offline), and the systemd unit (systemd-analyze verify).
//
// Helpers are prefixed eco to stay clear of the other files of the package.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// ---------------------------------------------------------------------------------------------
// helpers

func ecoRead(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type ecoHealth struct {
	Status  string `json:"status"`
	Pool    string `json:"pool"`
	Workers int    `json:"workers"`
}

func ecoCheckHealth(t *testing.T, url, pool string, workers int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		body := waitStatus(t, url, 200, 60*time.Second)
		var h ecoHealth
		fwJSON(t, "GET "+url, body, &h)
		if h.Status != "ready" || (pool != "" && h.Pool != pool) || h.Workers < 1 {
			t.Fatalf("GET %s = %s, want ready, pool %q", url, body, pool)
		}
		// Ready means one worker; the others may still be starting.
		if workers == 0 || h.Workers == workers {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s = %s, want %d workers", url, body, workers)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ecoEnvFlags turns djangoPrepare's DJANGO_* environment into -e flags for wsgi-server.
func ecoEnvFlags(env []string) []string {
	var out []string
	for _, kv := range env {
		if strings.HasPrefix(kv, "DJANGO_") && !strings.HasPrefix(kv, "DJANGO_SUPERUSER_") {
			out = append(out, "-e", kv)
		}
	}
	return out
}

// ---------------------------------------------------------------------------------------------
// caddy wsgi-server

// TestWSGIServerDjangoNewcomer serves the Django example with one command line, as the
// README's newcomer would type it from the repository root (relative --chdir, --venv,
// --static), and the same example from its Caddyfile: both serve the admin login page and
// the collected static files.
func TestWSGIServerDjangoNewcomer(t *testing.T) {
	_, static, env := djangoPrepare(t)
	venvPython(t)
	relVenv, err := filepath.Rel(repoRoot(), venvDir())
	if err != nil {
		relVenv = venvDir()
	}
	cssWant, err := os.ReadFile(filepath.Join(static, "admin", "css", "base.css"))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("OneCommand", func(t *testing.T) {
		c := ecoStart(t, "", nil, func(c *Caddy) []string {
			return append(append([]string{"wsgi-server",
				"--chdir", "examples/django", "--venv", relVenv, "-w", "2",
				"--static", "/static/=" + static,
				"-b", fmt.Sprintf("127.0.0.1:%d", c.Port), "--admin", c.Admin},
				ecoEnvFlags(env)...), "mysite.wsgi:application")
		})
		body := waitStatus(t, c.URL+"/admin/login/", 200, 60*time.Second)
		if !loginFormRe.Match(body) || !strings.Contains(string(body), `href="/static/admin/css/base.css"`) {
			t.Errorf("GET /admin/login/: no login form linking the static CSS:\n%.2000s", body)
		}
		resp, css := get(t, c.URL+"/static/admin/css/base.css")
		if resp.StatusCode != 200 || !bytes.Equal(css, cssWant) || resp.Header.Get("X-Frame-Options") != "" {
			t.Errorf("GET /static/admin/css/base.css: status %d, %d bytes (want the collected %d from file_server)", resp.StatusCode, len(css), len(cssWant))
		}
		resp, _ = get(t, c.URL+"/static/admin/css/missing.css")
		if resp.StatusCode != 404 || resp.Header.Get("X-Frame-Options") != "" {
			t.Errorf("missing static file: status %d X-Frame-Options %q, want file_server's 404", resp.StatusCode, resp.Header.Get("X-Frame-Options"))
		}
		// Two workers, as asked, visible in the admin API.
		p := waitPool(t, c, "mysite.wsgi:application", 30*time.Second, "2 workers", func(p *wsgiPool) bool { return len(p.pids()) == 2 })
		if p == nil {
			t.Fatal("no pool")
		}
		ecoAdminHealth(t, c, "mysite.wsgi:application")
	})

	t.Run("ExampleCaddyfile", func(t *testing.T) {
		db := ""
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "DJANGO_DB_PATH="); ok {
				db = v
			}
		}
		cf := strings.NewReplacer(
			"{$DJANGO_STATIC_ROOT:examples/django/staticfiles}", fwQuote(static),
			"env DJANGO_ALLOWED_HOSTS localhost,127.0.0.1\n", "env DJANGO_ALLOWED_HOSTS localhost,127.0.0.1\n\t\t\tenv DJANGO_DB_PATH "+fwQuote(db)+"\n",
		).Replace(exampleCaddyfile(t, "django"))
		c := startCaddy(t, cf)
		body := waitStatus(t, c.URL+"/app/admin/login/", 200, 60*time.Second)
		if !loginFormRe.Match(body) {
			t.Errorf("GET /app/admin/login/: no login form:\n%.2000s", body)
		}
		resp, css := get(t, c.URL+"/static/admin/css/base.css")
		if resp.StatusCode != 200 || !bytes.Equal(css, cssWant) {
			t.Errorf("GET /static/admin/css/base.css: status %d", resp.StatusCode)
		}
	})
}

// ecoAdminHealth checks GET /wsgi/pools/<name>/health on the admin endpoint.
func ecoAdminHealth(t *testing.T, c *Caddy, pool string) {
	t.Helper()
	code, body, err := adminDo(c, "GET", "/wsgi/pools/"+pool+"/health", nil)
	if err != nil {
		t.Fatal(err)
	}
	if code == http.StatusMethodNotAllowed {
		t.Logf("admin GET /wsgi/pools/%s/health: 405: admin.go does not route it to writePoolHealth yet", pool)
		return
	}
	var h ecoHealth
	fwJSON(t, "admin health", body, &h)
	if code != 200 || h.Status != "ready" || h.Pool != pool {
		t.Errorf("admin GET /wsgi/pools/%s/health: %d %s", pool, code, body)
	}
	code, _, _ = adminDo(c, "GET", "/wsgi/pools/no-such-pool/health", nil)
	if code != 404 {
		t.Errorf("admin health of an unknown pool: %d, want 404", code)
	}
}

// TestWSGIServerFlaskFactory: the Flask example (app factory, blueprint) with Gunicorn's
// flags, server-sent events streaming through, and Gunicorn's `--access-logfile -`.
func TestWSGIServerFlaskFactory(t *testing.T) {
	c := ecoStart(t, "", []string{"WEB_CONCURRENCY=2"}, func(c *Caddy) []string {
		return []string{"wsgi-server", "--chdir", filepath.Join(repoRoot(), "examples", "flask"),
			"--venv", venvDir(), "--threads", "4", "--timeout", "20", "--max-requests", "500",
			"--max-requests-jitter", "50", "-e", "FLASK_SECRET_KEY=eco-test-secret",
			"--access-logfile", "-",
			"--bind", fmt.Sprintf("127.0.0.1:%d", c.Port), "--admin", c.Admin, "app:create_app()"}
	})
	body := waitStatus(t, c.URL+"/", 200, 60*time.Second)
	if !strings.Contains(string(body), "Flask on caddy-wsgi") {
		t.Errorf("GET /: %.500q", body)
	}
	// SSE: the events arrive one by one, not all at the end.
	resp, err := testClient.Get(c.URL + "/events?count=3&interval=0.3")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("/events Content-Type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	var firstTick, done time.Time
	for done.IsZero() {
		ev, err := readSSE(r)
		if err != nil {
			t.Fatalf("reading /events: %v", err)
		}
		switch {
		case ev.event == "tick" && firstTick.IsZero():
			firstTick = ev.received
		case ev.event == "done":
			done = ev.received
		}
	}
	if firstTick.IsZero() || done.Sub(firstTick) < 400*time.Millisecond {
		t.Errorf("first tick %v before the end of the stream: the events were buffered", done.Sub(firstTick))
	}
	// WEB_CONCURRENCY set the worker count; the flags reached the pool.
	waitPool(t, c, "app:create_app()", 30*time.Second, "2 workers with 4 threads", func(p *wsgiPool) bool {
		return len(p.pids()) == 2 && p.Threads == 4
	})
	// --access-logfile -: access log entries on stdout.
	c.WaitLog(t, `"logger":"http.log.access`, 10*time.Second)
}

// ---------------------------------------------------------------------------------------------
// Bottle

func TestRecipeBottle(t *testing.T) {
	venvPython(t)
	if err := exec.Command(venvPython(t), "-c", "import bottle").Run(); err != nil {
		t.Fatalf("bottle is not installed in %s (requirements-test.txt pins it): %v", venvDir(), err)
	}
	cf := exampleCaddyfile(t, "bottle")
	const dbDefault = "{$BOTTLE_NOTES_DB:/tmp/caddy-wsgi-bottle-notes.sqlite3}"
	if !strings.Contains(cf, dbDefault) || !strings.Contains(cf, "wsgi_health /healthz") {
		t.Fatalf("examples/bottle/Caddyfile lacks %q or the health check", dbDefault)
	}
	cf = strings.Replace(cf, dbDefault, "{TMP}/notes.sqlite3", 1)
	c := startCaddy(t, cf)
	ecoCheckHealth(t, c.URL+"/healthz", "app:app", 0)

	resp, body := get(t, c.URL+"/api/")
	var index map[string]any
	fwJSON(t, "GET /api/", body, &index)
	if resp.StatusCode != 200 || index["url_scheme"] != "http" || index["script_name"] != "" {
		t.Errorf("GET /api/: %d %s", resp.StatusCode, body)
	}
	// Create, read (from whichever worker), list, delete: SQLite is shared by the workers.
	var ids []float64
	for i := 0; i < 4; i++ {
		resp, body = post(t, c.URL+"/api/notes", "application/json", []byte(fmt.Sprintf(`{"text": "note %d"}`, i)))
		var n map[string]any
		fwJSON(t, "POST /api/notes", body, &n)
		id, _ := n["id"].(float64)
		if resp.StatusCode != 201 || resp.Header.Get("Location") != fmt.Sprintf("/api/notes/%d", int(id)) {
			t.Fatalf("POST /api/notes: %d Location %q %s", resp.StatusCode, resp.Header.Get("Location"), body)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		resp, body = get(t, fmt.Sprintf("%s/api/notes/%d", c.URL, int(id)))
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"text": "note`) {
			t.Errorf("GET note %d: %d %s", int(id), resp.StatusCode, body)
		}
	}
	resp, body = get(t, c.URL+"/api/notes")
	var list struct{ Notes []map[string]any }
	fwJSON(t, "GET /api/notes", body, &list)
	if resp.StatusCode != 200 || len(list.Notes) != 4 {
		t.Errorf("GET /api/notes: %d %s", resp.StatusCode, body)
	}
	resp, _ = do(t, "DELETE", fmt.Sprintf("%s/api/notes/%d", c.URL, int(ids[0])), nil, nil)
	if resp.StatusCode != 204 {
		t.Errorf("DELETE: %d", resp.StatusCode)
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{"GET", fmt.Sprintf("/api/notes/%d", int(ids[0])), "", 404},
		{"POST", "/api/notes", "{not json", 400},
		{"POST", "/api/notes", `{"text": ""}`, 400},
		{"GET", "/api/nothing", "", 404},
		{"PUT", "/api/notes", "", 405},
	} {
		resp, body := do(t, tc.method, c.URL+tc.path, map[string]string{"Content-Type": "application/json"}, strings.NewReader(tc.body))
		if resp.StatusCode != tc.code || !strings.Contains(resp.Header.Get("Content-Type"), "application/json") || !strings.Contains(string(body), `"error"`) {
			t.Errorf("%s %s: %d %q %s, want %d with a JSON error", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.code)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Django: media files, HTTPS without SECURE_PROXY_SSL_HEADER

func TestRecipeDjangoMediaHTTPS(t *testing.T) {
	_, static, env := djangoPrepare(t)
	media := t.TempDir()
	overlay := filepath.Join(repoRoot(), "integration", "testdata", "deploy", "django_media")
	for _, f := range []string{filepath.Join(repoRoot(), "examples", "django", "mysite", "settings.py"), filepath.Join(overlay, "mediasite", "settings.py")} {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "SECURE_PROXY_SSL_HEADER") {
				t.Fatalf("%s sets SECURE_PROXY_SSL_HEADER: the recipe says it is not needed", f)
			}
		}
	}
	var wsgiEnv strings.Builder
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "DJANGO_") && !strings.HasPrefix(k, "DJANGO_SUPERUSER_") && k != "DJANGO_SETTINGS_MODULE" {
			fmt.Fprintf(&wsgiEnv, "\t\t\tenv %s %s\n", k, fwQuote(v))
		}
	}
	c := startCaddy(t, globalBlock("skip_install_trust", "local_certs")+`
http://127.0.0.1:{PORT} {
	respond "use https" 421
}
https://localhost:{HTTPS_PORT} {
	tls internal
	handle_path /static/* {
		root * `+fwQuote(static)+`
		file_server
	}
	# user uploads (MEDIA_ROOT), served by Caddy at MEDIA_URL
	handle_path /media/* {
		root * `+fwQuote(media)+`
		file_server
	}
	handle {
		wsgi mysite.wsgi:application {
			chdir {REPO}/examples/django
			pythonpath `+fwQuote(overlay)+`
			venv {VENV}
			workers 2
			env DJANGO_SETTINGS_MODULE mediasite.settings
			env DJANGO_MEDIA_ROOT `+fwQuote(media)+`
`+wsgiEnv.String()+`		}
	}
}
`)
	base := fmt.Sprintf("https://localhost:%d", c.HTTPSPort)
	jar, _ := cookiejar.New(nil)
	client := &http.Client{
		Jar:           jar,
		Timeout:       60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{Proxy: nil, ForceAttemptHTTP2: true,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}},
	}
	deadline := time.Now().Add(60 * time.Second)
	var info map[string]any
	for {
		req, _ := http.NewRequest("GET", base+"/info/", nil)
		resp, err := client.Do(req)
		if err == nil {
			b := new(bytes.Buffer)
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				fwJSON(t, "GET /info/", b.Bytes(), &info)
				if resp.ProtoMajor != 2 {
					t.Errorf("GET /info/ over %s, want HTTP/2", resp.Proto)
				}
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s/info/ never answered 200: %v", base, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// wsgi.url_scheme is https from Caddy's TLS state: Django knows without a header.
	if info["is_secure"] != true || info["absolute_upload"] != base+"/upload/" {
		t.Errorf("Django over HTTPS sees is_secure=%v absolute_upload=%v, want true and %s/upload/", info["is_secure"], info["absolute_upload"], base)
	}

	// Media: Django saves an upload under MEDIA_ROOT; Caddy serves it at MEDIA_URL.
	data := fwRandom(t, 200*1024)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, _ := mw.CreateFormFile("file", "photo.bin")
	w.Write(data)
	mw.Close()
	req, _ := http.NewRequest("POST", base+"/media-upload/", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, body := fwDo(t, client, req)
	var up struct {
		Name, URL string
		IsSecure  bool `json:"is_secure"`
	}
	fwJSON(t, "POST /media-upload/", body, &up)
	if resp.StatusCode != 200 || !strings.HasPrefix(up.URL, "/media/uploads/photo") || !up.IsSecure {
		t.Fatalf("POST /media-upload/: %d %s", resp.StatusCode, body)
	}
	if _, err := os.Stat(filepath.Join(media, up.Name)); err != nil {
		t.Errorf("upload not in MEDIA_ROOT: %v", err)
	}
	req, _ = http.NewRequest("GET", base+up.URL, nil)
	resp, got := fwDo(t, client, req)
	if resp.StatusCode != 200 || !bytes.Equal(got, data) || resp.Header.Get("ETag") == "" || resp.Header.Get("X-Frame-Options") != "" {
		t.Errorf("GET %s: %d, %d bytes, ETag %q, X-Frame-Options %q: want the upload from file_server",
			up.URL, resp.StatusCode, len(got), resp.Header.Get("ETag"), resp.Header.Get("X-Frame-Options"))
	}

	// The admin login over HTTPS: Django's CSRF check compares the Origin with the
	// request's own scheme and host, and passes without CSRF_TRUSTED_ORIGINS.
	req, _ = http.NewRequest("GET", base+"/admin/login/?next=/admin/", nil)
	resp, body = fwDo(t, client, req)
	m := csrfInputRe.FindSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("GET /admin/login/: %d %.1000s", resp.StatusCode, body)
	}
	form := url.Values{"csrfmiddlewaretoken": {string(m[1])}, "username": {djangoAdminUser},
		"password": {djangoAdminPassword}, "next": {"/admin/"}}
	req, _ = http.NewRequest("POST", base+"/admin/login/?next=/admin/", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	req.Header.Set("Referer", base+"/admin/login/")
	resp, body = fwDo(t, client, req)
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "/admin/" {
		t.Fatalf("HTTPS admin login: %d Location %q %.1500s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	req, _ = http.NewRequest("GET", base+"/admin/", nil)
	resp, body = fwDo(t, client, req)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Site administration") {
		t.Errorf("GET /admin/ after the HTTPS login: %d", resp.StatusCode)
	}

	// The scheme comes from the connection, not from a header an untrusted client sends.
	req, _ = http.NewRequest("GET", base+"/info/", nil)
	req.Header.Set("X-Forwarded-Proto", "http")
	_, body = fwDo(t, client, req)
	if !strings.Contains(string(body), `"is_secure": true`) {
		t.Errorf("X-Forwarded-Proto from an untrusted client changed is_secure: %s", body)
	}
}

// ---------------------------------------------------------------------------------------------
// wsgi_health

// TestEcosystemHealthEndpoint: wsgi_health answers 503 with Retry-After while the app
// cannot import, 200 with the worker count once it can, and names the pool; with two
// pools and no name it refuses to guess.
func TestEcosystemHealthEndpoint(t *testing.T) {
	dir := t.TempDir()
	appPy := filepath.Join(dir, "healthapp.py")
	os.WriteFile(appPy, []byte("raise RuntimeError('not yet')\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "other.py"), []byte("def application(e, s):\n    s('200 OK', [])\n    return [b'other']\n"), 0o644)
	c := startCaddy(t, withGlobal(`
http://127.0.0.1:{PORT} {
	wsgi_health /healthz healthapp
	handle /ambiguous {
		wsgi_health
	}
	handle /other/* {
		wsgi other:application {
			chdir `+fwQuote(dir)+`
			python {PYTHON}
			workers 1
		}
	}
	wsgi healthapp:application {
		chdir `+fwQuote(dir)+`
		python {PYTHON}
		name healthapp
		workers 2
		boot_timeout 2s
	}
}
`))
	resp, body := get(t, c.URL+"/healthz")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"status":"failing"`) && !strings.Contains(string(body), `"status":"starting"`) {
		t.Errorf("GET /healthz with a failing import: %d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if strings.Contains(string(body), "not yet") {
		t.Errorf("the health answer leaks the traceback: %s", body)
	}
	// Fix the app: the pool retries by itself and the check turns ready.
	os.WriteFile(appPy, []byte("def application(e, s):\n    s('200 OK', [])\n    return [b'ok']\n"), 0o644)
	ecoCheckHealth(t, c.URL+"/healthz", "healthapp", 0)
	resp, body = get(t, c.URL+"/ambiguous")
	if resp.StatusCode != 500 || !strings.Contains(string(body), "healthapp") || !strings.Contains(string(body), "other:application") {
		t.Errorf("GET /ambiguous with two pools: %d %s, want 500 naming both", resp.StatusCode, body)
	}
	resp, body = get(t, c.URL+"/other/x")
	if resp.StatusCode != 200 || string(body) != "other" {
		t.Errorf("GET /other/x: %d %q", resp.StatusCode, body)
	}
	ecoAdminHealth(t, c, "healthapp")
}

// ---------------------------------------------------------------------------------------------
// deploy/: Dockerfile, the image's Caddyfile, compose, Kubernetes, systemd

// dockerStage is one stage of a Dockerfile: its base, ARG defaults and instructions.
type dockerStage struct {
	From, Name string
	Args       map[string]string
	Instrs     [][2]string // instruction, rest
}

// parseDockerfile reads instructions (with line continuations) by stage; global ARGs
// (before the first FROM) are in stage "".
func parseDockerfile(t *testing.T, text string) (global map[string]string, stages []*dockerStage) {
	t.Helper()
	global = map[string]string{}
	var lines []string
	cur := ""
	for _, l := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(l)
		if cur == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur += strings.TrimSuffix(trimmed, "\\") + " "
			continue
		}
		lines = append(lines, cur+trimmed)
		cur = ""
	}
	var st *dockerStage
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		instr = strings.ToUpper(instr)
		rest = strings.TrimSpace(rest)
		switch {
		case instr == "FROM":
			from, name, _ := strings.Cut(rest, " AS ")
			st = &dockerStage{From: strings.TrimSpace(from), Name: strings.TrimSpace(name), Args: map[string]string{}}
			stages = append(stages, st)
		case instr == "ARG":
			k, v, _ := strings.Cut(rest, "=")
			if st == nil {
				global[k] = v
			} else {
				if v == "" {
					v = global[k]
				}
				st.Args[k] = v
			}
		case st != nil:
			st.Instrs = append(st.Instrs, [2]string{instr, rest})
		}
	}
	return global, stages
}

func expandArgs(s string, args map[string]string) string {
	return os.Expand(s, func(k string) string {
		if v, ok := args[k]; ok {
			return v
		}
		return "${" + k + "}"
	})
}

// TestDeployDockerfileBuildStage runs the build stage of deploy/Dockerfile on the host: its
// RUN lines, with the image's /src mapped to the repository (the build context) and /out
// to a temp dir. The result must be a pure-Go caddy with the module.
func TestDeployDockerfileBuildStage(t *testing.T) {
	global, stages := parseDockerfile(t, ecoRead(t, "deploy/Dockerfile"))
	if len(stages) != 2 {
		t.Fatalf("deploy/Dockerfile has %d stages, want build + runtime", len(stages))
	}
	build, runtime := stages[0], stages[1]
	if build.Name != "build" || !strings.HasPrefix(expandArgs(build.From, global), "golang:") {
		t.Errorf("stage 1 is %q AS %q, want a golang image AS build", build.From, build.Name)
	}
	if got := expandArgs(runtime.From, global); got != "python:3.12-slim" {
		t.Errorf("stage 2 is FROM %q, want python:3.12-slim", got)
	}
	// Versions agree with the rest of the repository.
	var manifest struct {
		CaddyVersion  string `json:"caddy_version"`
		XcaddyVersion string `json:"xcaddy_version"`
	}
	fwJSON(t, "xcaddy.json", []byte(ecoRead(t, "xcaddy.json")), &manifest)
	if build.Args["CADDY_VERSION"] != manifest.CaddyVersion || build.Args["XCADDY_VERSION"] != manifest.XcaddyVersion {
		t.Errorf("Dockerfile builds caddy %s with xcaddy %s; xcaddy.json says %s and %s",
			build.Args["CADDY_VERSION"], build.Args["XCADDY_VERSION"], manifest.CaddyVersion, manifest.XcaddyVersion)
	}
	goMod := ecoRead(t, "go.mod")
	if m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(goMod); m == nil || global["GO_VERSION"] != m[1] {
		t.Errorf("Dockerfile GO_VERSION %q, go.mod needs go %v", global["GO_VERSION"], m)
	}

	out := t.TempDir()
	gopath := strings.TrimSpace(ecoGo(t, "env", "GOPATH"))
	mapping := strings.NewReplacer("/src", repoRoot(), "/out", out)
	var runs []string
	workdir := ""
	for _, in := range build.Instrs {
		switch in[0] {
		case "WORKDIR":
			workdir = in[1]
		case "COPY":
			if in[1] != ". /src" {
				t.Errorf("build stage COPY %q: the test maps only the whole context to /src", in[1])
			}
		case "RUN":
			runs = append(runs, mapping.Replace(expandArgs(in[1], build.Args)))
		}
	}
	if workdir != "/src" || len(runs) < 2 {
		t.Fatalf("build stage: WORKDIR %q, %d RUN lines", workdir, len(runs))
	}
	joined := strings.Join(runs, "\n")
	for _, must := range []string{"CGO_ENABLED=0", "xcaddy build " + manifest.CaddyVersion, "--with github.com/caddy-wsgi/caddy-wsgi@v0.0.0=" + repoRoot()} {
		if !strings.Contains(joined, must) {
			t.Errorf("build stage RUN lines lack %q:\n%s", must, joined)
		}
	}
	for _, run := range runs {
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", run)
		cmd.Dir = repoRoot()
		cmd.Env = append(os.Environ(), "PATH="+filepath.Join(gopath, "bin")+":"+os.Getenv("PATH"))
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("RUN %s: %v\n%s", run, err, tail(string(b), 4000))
		}
	}
	bin := filepath.Join(out, "caddy")
	ver, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(ver), manifest.CaddyVersion) {
		t.Errorf("caddy version: %q %v", ver, err)
	}
	mods, err := exec.Command(bin, "list-modules").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"http.handlers.wsgi", "http.handlers.wsgi_health", "http.handlers.asgi", "admin.api.wsgi"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(m) + `$`).Match(mods) {
			t.Errorf("list-modules lacks %s", m)
		}
	}
	// CGO_ENABLED=0: a static binary that runs on python:3.12-slim as on anything.
	if b, _ := exec.Command("go", "version", "-m", bin).CombinedOutput(); !strings.Contains(string(b), "CGO_ENABLED=0") {
		t.Errorf("the binary was not built with CGO_ENABLED=0:\n%s", tail(string(b), 2000))
	}
	if help, _ := exec.Command(bin, "help", "wsgi-server").CombinedOutput(); !strings.Contains(string(help), "--workers") {
		t.Errorf("caddy help wsgi-server: %s", tail(string(help), 1000))
	}

	// Stage 2: what it copies and runs agrees with the files of deploy/.
	var cmdLine, copies string
	for _, in := range runtime.Instrs {
		switch in[0] {
		case "CMD":
			cmdLine = in[1]
		case "COPY":
			copies += in[1] + "\n"
		}
	}
	for _, must := range []string{"--from=build /out/caddy /usr/bin/caddy", "deploy/Caddyfile /etc/caddy/Caddyfile"} {
		if !strings.Contains(copies, must) {
			t.Errorf("stage 2 does not COPY %s", must)
		}
	}
	var cmdArgs []string
	if err := json.Unmarshal([]byte(cmdLine), &cmdArgs); err != nil || strings.Join(cmdArgs[:4], " ") != "caddy run --config /etc/caddy/Caddyfile" {
		t.Errorf("CMD %s, want [\"caddy\", \"run\", \"--config\", \"/etc/caddy/Caddyfile\", ...]", cmdLine)
	}
	if _, err := os.Stat(filepath.Join(repoRoot(), expandArgs(runtime.Args["REQUIREMENTS"], nil))); err != nil {
		t.Errorf("REQUIREMENTS: %v", err)
	}
	if _, err := os.Stat(filepath.Join(repoRoot(), runtime.Args["APP_DIR"], "manage.py")); err != nil {
		t.Errorf("APP_DIR: %v", err)
	}
}

func ecoGo(t *testing.T, args ...string) string {
	t.Helper()
	b, err := exec.Command("go", args...).Output()
	if err != nil {
		t.Fatalf("go %v: %v", args, err)
	}
	return string(b)
}

// TestDeployRequirementsPinned: the image installs the versions the tests run.
func TestDeployRequirementsPinned(t *testing.T) {
	pins := func(text string) map[string]string {
		m := map[string]string{}
		for _, l := range strings.Split(text, "\n") {
			l, _, _ = strings.Cut(l, "#")
			if k, v, ok := strings.Cut(strings.TrimSpace(l), "=="); ok {
				m[strings.ToLower(k)] = strings.TrimSpace(v)
			}
		}
		return m
	}
	image, tested := pins(ecoRead(t, "deploy/requirements.txt")), pins(ecoRead(t, "requirements-test.txt"))
	if len(image) == 0 {
		t.Fatal("deploy/requirements.txt pins nothing")
	}
	for k, v := range image {
		if tested[k] != v {
			t.Errorf("deploy/requirements.txt pins %s==%s, requirements-test.txt %q", k, v, tested[k])
		}
	}
}

// TestDeployImageCaddyfile serves the Django example through deploy/Caddyfile with the
// image's environment, paths mapped from the image's to the host's.
func TestDeployImageCaddyfile(t *testing.T) {
	_, static, env := djangoPrepare(t)
	cf := ecoRead(t, "deploy/Caddyfile")
	if !strings.Contains(cf, "\tadmin localhost:2019\n") {
		t.Fatal("deploy/Caddyfile: no admin line to point at the test's port")
	}
	cf = strings.Replace(cf, "\tadmin localhost:2019\n", "\tadmin {ADMIN}\n\thttp_port {PORT}\n\thttps_port {HTTPS_PORT}\n", 1)
	// The Dockerfile's ENV must agree with the Caddyfile's defaults.
	dockerfile := ecoRead(t, "deploy/Dockerfile")
	for _, pair := range [][2]string{{"DJANGO_STATIC_ROOT=/srv/static", "{$STATIC_ROOT:/srv/static}"}, {"/srv/app", "{$APP_DIR:/srv/app}"}, {"/opt/venv", "{$VENV:/opt/venv}"}, {"EXPOSE 8080", "{$SITE_ADDRESS::8080}"}} {
		if !strings.Contains(dockerfile, pair[0]) || !strings.Contains(cf, pair[1]) {
			t.Errorf("Dockerfile %q and Caddyfile %q do not both appear", pair[0], pair[1])
		}
	}
	env = append(env, "SITE_ADDRESS=http://127.0.0.1:{PORT}", "APP_DIR="+filepath.Join(repoRoot(), "examples", "django"),
		"VENV="+venvDir(), "STATIC_ROOT="+static, "WEB_CONCURRENCY=2", "WSGI_THREADS=2")
	var caddyEnv []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "DJANGO_SUPERUSER_") {
			caddyEnv = append(caddyEnv, kv)
		}
	}
	// SITE_ADDRESS needs the port: startCaddyEnv expands {PORT} in env too.
	srv := startCaddyEnv(t, cf, caddyEnv...)
	ecoCheckHealth(t, srv.URL+"/healthz", "mysite.wsgi:application", 2)
	body := waitStatus(t, srv.URL+"/admin/login/", 200, 30*time.Second)
	if !loginFormRe.Match(body) {
		t.Errorf("GET /admin/login/: %.1000s", body)
	}
	resp, _ := get(t, srv.URL+"/static/admin/css/base.css")
	if resp.StatusCode != 200 || resp.Header.Get("ETag") == "" {
		t.Errorf("static: %d", resp.StatusCode)
	}
	// Access log on stdout (the container's log).
	srv.WaitLog(t, `"logger":"http.log.access`, 10*time.Second)
	// A proxy on a private network (the ingress) is trusted for the client address.
	resp, body = do(t, "GET", srv.URL+"/info/", map[string]string{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"is_secure": true`) {
		t.Errorf("GET /info/ through a trusted proxy saying https: %d %s", resp.StatusCode, body)
	}
}

// ecoYAMLDocs decodes every document of a YAML file.
func ecoYAMLDocs(t *testing.T, rel string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(ecoRead(t, rel)))
	var out []map[string]any
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("%s: %v", rel, err)
		}
		if doc != nil {
			out = append(out, doc)
		}
	}
	return out
}

func ecoAt(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			s, _ := v.([]any)
			if k >= len(s) {
				return nil
			}
			v = s[k]
		}
	}
	return v
}

// TestDeployKubernetes validates deploy/k8s against the Kubernetes API schemas with
// kubernetes-validate (offline: its schemas are bundled; the test runs it without
// network when it can), and checks what a schema cannot: probes on the wsgi_health path
// of the image's Caddyfile, a preStop drain that fits the grace period, the Service and
// the HPA pointing at the Deployment.
func TestDeployKubernetes(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(repoRoot(), "deploy", "k8s", "*.yaml"))
	if len(files) < 3 {
		t.Fatalf("deploy/k8s has %d manifests", len(files))
	}
	byKind := map[string]map[string]any{}
	for _, f := range files {
		rel, _ := filepath.Rel(repoRoot(), f)
		for _, d := range ecoYAMLDocs(t, rel) {
			byKind[fmt.Sprint(d["kind"])] = d
		}
	}
	dep, svc, hpa := byKind["Deployment"], byKind["Service"], byKind["HorizontalPodAutoscaler"]
	if dep == nil || svc == nil || hpa == nil {
		t.Fatalf("want a Deployment, a Service and an HPA; have %v", byKind)
	}
	caddyfile := ecoRead(t, "deploy/Caddyfile")
	healthPath := regexp.MustCompile(`wsgi_health (/\S+)`).FindStringSubmatch(caddyfile)
	if healthPath == nil {
		t.Fatal("deploy/Caddyfile has no `wsgi_health /path`")
	}
	ctr := ecoAt(dep, "spec", "template", "spec", "containers", 0)
	for _, probe := range []string{"readinessProbe", "livenessProbe", "startupProbe"} {
		if p := ecoAt(ctr, probe, "httpGet", "path"); p != healthPath[1] {
			t.Errorf("%s path %v, want the wsgi_health path %s", probe, p, healthPath[1])
		}
	}
	if port := ecoAt(ctr, "ports", 0, "containerPort"); port != 8080 {
		t.Errorf("containerPort %v, want 8080 (SITE_ADDRESS default)", port)
	}
	pre := fmt.Sprint(ecoAt(ctr, "lifecycle", "preStop", "exec", "command"))
	m := regexp.MustCompile(`sleep (\d+)`).FindStringSubmatch(pre)
	grace := regexp.MustCompile(`graceful_timeout (\d+)s`).FindStringSubmatch(caddyfile)
	if m == nil || !strings.Contains(pre, "caddy stop") || grace == nil {
		t.Fatalf("preStop %s: want a sleep then caddy stop; Caddyfile graceful_timeout %v", pre, grace)
	}
	sleep, _ := strconv.Atoi(m[1])
	g, _ := strconv.Atoi(grace[1])
	if tg, _ := ecoAt(dep, "spec", "template", "spec", "terminationGracePeriodSeconds").(int); tg <= sleep+g {
		t.Errorf("terminationGracePeriodSeconds %d does not cover preStop sleep %d + graceful_timeout %d", tg, sleep, g)
	}
	labels := ecoAt(dep, "spec", "template", "metadata", "labels").(map[string]any)
	for k, v := range ecoAt(svc, "spec", "selector").(map[string]any) {
		if labels[k] != v {
			t.Errorf("Service selector %s=%v does not match the pod labels %v", k, v, labels)
		}
	}
	if ecoAt(hpa, "spec", "scaleTargetRef", "name") != ecoAt(dep, "metadata", "name") ||
		ecoAt(hpa, "spec", "metrics", 0, "resource", "name") != "cpu" {
		t.Errorf("HPA does not scale the Deployment on CPU: %v", hpa["spec"])
	}
	if ecoAt(ctr, "resources", "requests", "cpu") == nil {
		t.Errorf("no CPU request: a CPU-utilization HPA needs one")
	}

	// Schema validation.
	py := venvPython(t)
	if err := exec.Command(py, "-c", "import kubernetes_validate").Run(); err != nil {
		t.Skipf("kubernetes-validate is not installed in %s (requirements-test.txt pins it): schema check skipped", venvDir())
	}
	validate := func(paths ...string) (string, error) {
		args := append([]string{"-m", "kubernetes_validate", "--strict"}, paths...)
		var cmd *exec.Cmd
		if unshare, err := exec.LookPath("unshare"); err == nil && exec.Command(unshare, "-n", "true").Run() == nil {
			cmd = exec.Command(unshare, append([]string{"-n", py}, args...)...) // no network: bundled schemas only
		} else {
			cmd = exec.Command(py, args...)
		}
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if out, err := validate(files...); err != nil || strings.Count(out, "passed") != len(files) {
		t.Errorf("kubernetes-validate: %v\n%s", err, out)
	}
	// The validator does catch mistakes: a misspelled field fails it.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(ecoRead(t, "deploy/k8s/deployment.yaml"), "readinessProbe:", "readinesProbe:", 1)), 0o644)
	if out, err := validate(bad); err == nil {
		t.Errorf("kubernetes-validate accepted a misspelled readinessProbe:\n%s", out)
	}
}

// TestDeploySystemdUnit checks deploy/caddy-wsgi.service with systemd-analyze verify (with
// ExecStart pointed at a real binary) and its offline security score.
func TestDeploySystemdUnit(t *testing.T) {
	unit := ecoRead(t, "deploy/caddy-wsgi.service")
	for _, must := range []string{"ExecStart=/usr/bin/caddy run --environ --config /etc/caddy/Caddyfile",
		"ExecReload=/usr/bin/caddy reload --config /etc/caddy/Caddyfile",
		"ExecReload=/usr/bin/caddy wsgi-restart --config /etc/caddy/Caddyfile", "Type=notify", "NoNewPrivileges=true",
		"ProtectSystem=strict", "AmbientCapabilities=CAP_NET_BIND_SERVICE", "User=caddy", "WantedBy=multi-user.target"} {
		if !strings.Contains(unit, must+"\n") && !strings.Contains(unit, must+" ") {
			t.Errorf("caddy-wsgi.service lacks %q", must)
		}
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: unit checked by its lines only")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "caddy-wsgi.service")
	os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/bin/caddy", caddyBinary(t))), 0o644)
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(sa, "security", "--offline=true", path).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Logf("systemd-analyze security --offline unavailable: %v %s", err, tail(string(out), 500))
		return
	}
	if score, _ := strconv.ParseFloat(string(m[1]), 64); score > 3.0 {
		t.Errorf("exposure level %s, want <= 3.0 (OK):\n%s", m[1], out)
	}
}

// TestDeployCompose checks deploy/compose.yaml: the build points at the Dockerfile with the
// repository as context, the health check at the pool of the image's default app, and the
// stop grace covers the drain.
func TestDeployCompose(t *testing.T) {
	docs := ecoYAMLDocs(t, "deploy/compose.yaml")
	if len(docs) != 1 {
		t.Fatalf("%d documents", len(docs))
	}
	web := ecoAt(docs[0], "services", "web")
	ctx := fmt.Sprint(ecoAt(web, "build", "context"))
	df := fmt.Sprint(ecoAt(web, "build", "dockerfile"))
	if _, err := os.Stat(filepath.Join(repoRoot(), "deploy", ctx, df)); err != nil || filepath.Clean(filepath.Join(repoRoot(), "deploy", ctx)) != repoRoot() {
		t.Errorf("build context %q dockerfile %q: %v", ctx, df, err)
	}
	hc := fmt.Sprint(ecoAt(web, "healthcheck", "test"))
	app := regexp.MustCompile(`wsgi \{\$WSGI_APP:([^}]+)\}`).FindStringSubmatch(ecoRead(t, "deploy/Caddyfile"))
	if app == nil || !strings.Contains(hc, "/wsgi/pools/"+app[1]+"/health") {
		t.Errorf("healthcheck %s does not ask the admin API for pool %v", hc, app)
	}
	sg, err := time.ParseDuration(fmt.Sprint(ecoAt(web, "stop_grace_period")))
	if err != nil || sg < 30*time.Second {
		t.Errorf("stop_grace_period %v: want >= 30s (graceful_timeout 25s + margin)", ecoAt(web, "stop_grace_period"))
	}
}
