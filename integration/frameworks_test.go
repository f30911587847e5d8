//go:build linux

package integration

// Framework tests: the Flask and Django examples (examples/flask, examples/django) served by
// caddy-wsgi from the test venv (requirements-test.txt), exercised the way a browser or a
// script would: forms, uploads, cookies and sessions, server-sent events, the Django admin
// login with CSRF, a chunked upload, static files from Caddy's file_server, and SCRIPT_NAME
// under handle_path.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	"strings"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------------------------
// helpers (prefixed fw to stay clear of the other test files of the package)

// fwClient returns a client with its own cookie jar that does not follow redirects.
func fwClient(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Jar:     jar,
		Timeout: 60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Transport: &http.Transport{Proxy: nil, DisableCompression: true},
	}
}

func fwSHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// onlyReader hides the concrete type of a reader so that net/http cannot learn the length of
// a request body and has to send it chunked.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// ---------------------------------------------------------------------------------------------
// Flask

func flaskCaddyfile() string {
	return withGlobal(`
http://127.0.0.1:{PORT} {
	wsgi app:create_app() {
		venv {VENV}
		chdir {REPO}/examples/flask
		workers 2
		threads 4
		env FLASK_SECRET_KEY flask-test-secret
	}
}
`)
}

func TestFlask(t *testing.T) {
	c := startCaddy(t, flaskCaddyfile())
	// the factory ran and the app answers
	waitStatus(t, c.URL+"/", 200, 60*time.Second)

	t.Run("Form", func(t *testing.T) { testFlaskForm(t, c) })
	t.Run("Upload", func(t *testing.T) { testFlaskUpload(t, c) })
	t.Run("CookiesAndSession", func(t *testing.T) { testFlaskSession(t, c) })
	t.Run("ServerSentEvents", func(t *testing.T) { testFlaskSSE(t, c) })
}

func testFlaskForm(t *testing.T, c *Caddy) {
	client := fwClient(t)
	form := url.Values{}
	form.Set("name", "Zoë <b>")
	form.Set("message", "héllo & ünïcode ✓ = 1+1")
	form.Add("colour", "red")
	form.Add("colour", "blue")

	// JSON answer: the exact values Flask parsed out of the urlencoded body.
	req, _ := http.NewRequest("POST", c.URL+"/form", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, body := fwDo(t, client, req)
	if resp.StatusCode != 200 {
		t.Fatalf("POST /form: status %d, body %.500q", resp.StatusCode, body)
	}
	var got struct {
		Name    string   `json:"name"`
		Message string   `json:"message"`
		Colours []string `json:"colours"`
	}
	fwJSON(t, "POST /form", body, &got)
	if got.Name != "Zoë <b>" || got.Message != "héllo & ünïcode ✓ = 1+1" ||
		strings.Join(got.Colours, ",") != "red,blue" {
		t.Errorf("POST /form parsed %+v, want name %q message %q colours [red blue]",
			got, "Zoë <b>", "héllo & ünïcode ✓ = 1+1")
	}

	// HTML answer: the template escaped the name.
	req, _ = http.NewRequest("POST", c.URL+"/form", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body = fwDo(t, client, req)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Thanks, Zoë &lt;b&gt;!") {
		t.Errorf("POST /form (HTML): status %d, want 200 and %q in %.800q", resp.StatusCode, "Thanks, Zoë &lt;b&gt;!", body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("POST /form (HTML): Content-Type %q", ct)
	}

	// Validation error: the app's own 400.
	req, _ = http.NewRequest("POST", c.URL+"/form", strings.NewReader("message=no+name"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body = fwDo(t, client, req)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "name is required") {
		t.Errorf("POST /form without name: status %d, want 400 with %q; body %.500q", resp.StatusCode, "name is required", body)
	}
}

type flaskUploadResult struct {
	Files []struct {
		Field       string `json:"field"`
		Filename    string `json:"filename"`
		ContentType string `json:"content_type"`
		Size        int    `json:"size"`
		SHA256      string `json:"sha256"`
	} `json:"files"`
	Fields map[string][]string `json:"fields"`
}

func testFlaskUpload(t *testing.T, c *Caddy) {
	client := fwClient(t)
	small := fwRandom(t, 200*1024)    // below buffer_body (1 MiB): buffered by Go
	large := fwRandom(t, 3*1024*1024) // above it: streamed to the worker
	text := []byte("a small text file\nwith two lines\n")

	type file struct {
		field, name string
		data        []byte
	}
	cases := []struct {
		name    string
		files   []file
		chunked bool
	}{
		{"two files", []file{{"file", "data.bin", small}, {"notes", "notes é.txt", text}}, false},
		{"3MiB file", []file{{"file", "big.bin", large}}, false},
		{"chunked 200KiB", []file{{"file", "chunked.bin", small}}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			if err := mw.WriteField("note", "über upload"); err != nil {
				t.Fatal(err)
			}
			for _, f := range tc.files {
				w, err := mw.CreateFormFile(f.field, f.name)
				if err != nil {
					t.Fatal(err)
				}
				w.Write(f.data)
			}
			mw.Close()
			var reqBody io.Reader = bytes.NewReader(buf.Bytes())
			if tc.chunked {
				reqBody = onlyReader{bytes.NewReader(buf.Bytes())}
			}
			req, _ := http.NewRequest("POST", c.URL+"/upload", reqBody)
			if tc.chunked {
				req.ContentLength = -1
				req.TransferEncoding = []string{"chunked"}
			}
			req.Header.Set("Content-Type", mw.FormDataContentType())
			resp, body := fwDo(t, client, req)
			if resp.StatusCode != 200 {
				t.Fatalf("POST /upload: status %d, body %.500q", resp.StatusCode, body)
			}
			var got flaskUploadResult
			fwJSON(t, "POST /upload", body, &got)
			if len(got.Files) != len(tc.files) {
				t.Fatalf("POST /upload: app saw %d files, want %d: %s", len(got.Files), len(tc.files), body)
			}
			for i, f := range tc.files {
				g := got.Files[i]
				if g.Field != f.field || g.Filename != f.name || g.Size != len(f.data) || g.SHA256 != fwSHA256(f.data) {
					t.Errorf("file %d: app saw field %q name %q size %d sha256 %s; sent field %q name %q size %d sha256 %s",
						i, g.Field, g.Filename, g.Size, g.SHA256, f.field, f.name, len(f.data), fwSHA256(f.data))
				}
			}
			if n := got.Fields["note"]; len(n) != 1 || n[0] != "über upload" {
				t.Errorf("form field note = %q, want [über upload]", n)
			}
		})
	}
}

func testFlaskSession(t *testing.T, c *Caddy) {
	client := fwClient(t)
	u, _ := url.Parse(c.URL)

	// The session counter lives in a signed cookie that the client sends back: the count must
	// go up by one per request, whichever worker serves it (they share FLASK_SECRET_KEY).
	pids := map[int]bool{}
	for want := 1; want <= 6; want++ {
		req, _ := http.NewRequest("GET", c.URL+"/session", nil)
		resp, body := fwDo(t, client, req)
		if resp.StatusCode != 200 {
			t.Fatalf("GET /session #%d: status %d body %.300q", want, resp.StatusCode, body)
		}
		var got struct {
			Visits int `json:"visits"`
			Pid    int `json:"pid"`
		}
		fwJSON(t, "GET /session", body, &got)
		if got.Visits != want {
			t.Fatalf("GET /session #%d: visits = %d, want %d (session cookie not read back)", want, got.Visits, want)
		}
		pids[got.Pid] = true
		if want == 1 {
			sc := strings.Join(resp.Header.Values("Set-Cookie"), "\n")
			if !strings.Contains(sc, "session=") || !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "Path=/") {
				t.Errorf("first GET /session: Set-Cookie %q, want a session cookie with HttpOnly and Path=/", sc)
			}
		}
	}
	t.Logf("session requests were served by worker pids %v", pids)

	// A plain cookie: set by one response, sent back by the client, read by the app.
	req, _ := http.NewRequest("GET", c.URL+"/cookie/set?name=flavour&value=oatmeal-raisin", nil)
	resp, body := fwDo(t, client, req)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /cookie/set: status %d body %.300q", resp.StatusCode, body)
	}
	found := false
	for _, ck := range resp.Cookies() {
		if ck.Name == "flavour" && ck.Value == "oatmeal-raisin" && ck.HttpOnly {
			found = true
		}
	}
	if !found {
		t.Errorf("GET /cookie/set: Set-Cookie %q, want flavour=oatmeal-raisin; HttpOnly", resp.Header.Values("Set-Cookie"))
	}
	if ck := client.Jar.Cookies(u); len(ck) < 2 {
		t.Errorf("cookie jar holds %v, want the session and flavour cookies", ck)
	}
	req, _ = http.NewRequest("GET", c.URL+"/cookie", nil)
	resp, body = fwDo(t, client, req)
	var got struct {
		Cookies map[string]string `json:"cookies"`
	}
	fwJSON(t, "GET /cookie", body, &got)
	if resp.StatusCode != 200 || got.Cookies["flavour"] != "oatmeal-raisin" || got.Cookies["session"] == "" {
		t.Errorf("GET /cookie: status %d, app read cookies %v; want flavour=oatmeal-raisin and a session cookie",
			resp.StatusCode, got.Cookies)
	}
}

type sseEvent struct {
	id, event, data string
	received        time.Time
}

// readSSE reads one event (up to the blank line) from r; comment-only and retry-only blocks
// are returned too, with empty event and data.
func readSSE(r *bufio.Reader) (sseEvent, error) {
	var ev sseEvent
	lines := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if lines == 0 {
				continue
			}
			ev.received = time.Now()
			return ev, nil
		}
		lines++
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimPrefix(v, " ")
		switch k {
		case "id":
			ev.id = v
		case "event":
			ev.event = v
		case "data":
			if ev.data != "" {
				ev.data += "\n"
			}
			ev.data += v
		}
	}
}

func testFlaskSSE(t *testing.T, c *Caddy) {
	const count = 4
	const interval = 1.0 // seconds between events, produced by the app with time.sleep
	client := fwClient(t)
	req, _ := http.NewRequest("GET", fmt.Sprintf("%s/events?count=%d&interval=%g", c.URL, count, interval), nil)
	req.Header.Set("Accept", "text/event-stream")
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /events: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /events: status %d body %.300q", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("Content-Type %q, want text/event-stream", ct)
	}
	if cl := resp.Header.Get("Content-Length"); cl != "" {
		t.Errorf("a stream has Content-Length %q", cl)
	}
	// The headers must arrive long before the stream is complete.
	if d := time.Since(start); d > time.Duration(interval*float64(time.Second))/2 {
		t.Errorf("response headers took %v, the whole stream takes %gs: the response was buffered", d, interval*(count-1))
	}

	r := bufio.NewReader(resp.Body)
	var ticks []sseEvent
	var producedAt []float64
	sawDone := false
	for !sawDone {
		ev, err := readSSE(r)
		if err != nil {
			t.Fatalf("reading event stream after %d ticks: %v", len(ticks), err)
		}
		switch ev.event {
		case "tick":
			var d struct {
				N          int     `json:"n"`
				ProducedAt float64 `json:"produced_at"`
			}
			if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
				t.Fatalf("event data %q: %v", ev.data, err)
			}
			if d.N != len(ticks) || ev.id != fmt.Sprint(len(ticks)) {
				t.Fatalf("event #%d has n=%d id=%q: out of order", len(ticks), d.N, ev.id)
			}
			ticks = append(ticks, ev)
			producedAt = append(producedAt, d.ProducedAt)
		case "done":
			sawDone = true
		case "":
			// the retry: block
		default:
			t.Fatalf("unexpected event %+v", ev)
		}
	}
	if len(ticks) != count {
		t.Fatalf("got %d tick events before done, want %d", len(ticks), count)
	}
	// Event n reached the client before the app produced event n+1 (the app sleeps `interval`
	// between them; both clocks are this machine's wall clock).
	for i := 0; i+1 < len(ticks); i++ {
		recv := float64(ticks[i].received.UnixNano()) / 1e9
		if recv >= producedAt[i+1] {
			t.Errorf("event %d was received at %.3f, after the app produced event %d at %.3f: events are buffered, not streamed",
				i, recv, i+1, producedAt[i+1])
		}
		lag := recv - producedAt[i]
		t.Logf("event %d: produced %.3f, received %.3f (lag %.1f ms)", i, producedAt[i], recv, lag*1000)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("after the done event: %v, want EOF", err)
	}
}

// ---------------------------------------------------------------------------------------------
// Django

const (
	djangoAdminUser     = "admin"
	djangoAdminPassword = "caddy-wsgi-Test-pw-91"
)

type djangoSite struct {
	c          *Caddy
	staticRoot string
	env        []string
}

// djangoManage runs examples/django/manage.py with the venv interpreter and env.
func djangoManage(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(venvPython(t), append([]string{"manage.py"}, args...)...)
	cmd.Dir = filepath.Join(repoRoot(), "examples", "django")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("manage.py %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startDjango serves the example under /app/ with /static/ from file_server.
func startDjango(t *testing.T) *djangoSite {
	t.Helper()
	db, static, env := djangoPrepare(t)
	cf := withGlobal(`
http://127.0.0.1:{PORT} {
	handle_path /app/* {
		wsgi mysite.wsgi:application {
			venv {VENV}
			chdir {REPO}/examples/django
			workers 2
			env DJANGO_DB_PATH ` + fwQuote(db) + `
			env DJANGO_STATIC_ROOT ` + fwQuote(static) + `
			env DJANGO_SECRET_KEY django-test-secret-key-for-caddy-wsgi-integration-tests-0123456789
			env DJANGO_ALLOWED_HOSTS 127.0.0.1,localhost
			env DJANGO_DEBUG 0
		}
	}
	redir /app /app/ 308
	handle_path /static/* {
		root * ` + fwQuote(static) + `
		file_server
	}
}
`)
	c := startCaddy(t, cf)
	waitStatus(t, c.URL+"/app/info/", 200, 60*time.Second)
	return &djangoSite{c: c, staticRoot: static, env: env}
}

func TestDjango(t *testing.T) {
	s := startDjango(t)
	t.Run("ScriptName", func(t *testing.T) { testDjangoScriptName(t, s) })
	t.Run("AdminLogin", func(t *testing.T) { testDjangoAdminLogin(t, s) })
	t.Run("ChunkedUpload", func(t *testing.T) { testDjangoChunkedUpload(t, s) })
	t.Run("LargeMultipartUpload", func(t *testing.T) { testDjangoLargeUpload(t, s) })
	t.Run("StaticFromFileServer", func(t *testing.T) { testDjangoStatic(t, s) })
}

func testDjangoScriptName(t *testing.T, s *djangoSite) {
	c := s.c
	resp, body := get(t, c.URL+"/app/info/")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /app/info/: status %d body %.500q", resp.StatusCode, body)
	}
	var info map[string]any
	fwJSON(t, "GET /app/info/", body, &info)
	want := map[string]any{
		"script_name":      "/app",
		"path":             "/app/info/",
		"path_info":        "/info/",
		"reverse_index":    "/app/",
		"reverse_upload":   "/app/upload/",
		"reverse_admin":    "/app/admin/",
		"absolute_upload":  c.URL + "/app/upload/",
		"static_admin_css": "/static/admin/css/base.css",
		"is_secure":        false,
	}
	for k, v := range want {
		if info[k] != v {
			t.Errorf("Django sees %s = %#v, want %#v", k, info[k], v)
		}
	}

	// The template view builds its links with {% url %}: they carry the prefix.
	resp, body = get(t, c.URL+"/app/")
	page := string(body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /app/: status %d body %.500q", resp.StatusCode, body)
	}
	for _, s := range []string{`<code id="script-name">/app</code>`, `href="/app/admin/"`, `action="/app/upload/"`, `href="/static/admin/css/base.css"`} {
		if !strings.Contains(page, s) {
			t.Errorf("GET /app/: page lacks %q:\n%.2000s", s, page)
		}
	}

	// /app without the slash is redirected into the mount.
	resp, _ = get(t, c.URL+"/app")
	if resp.StatusCode != 308 || resp.Header.Get("Location") != "/app/" {
		t.Errorf("GET /app: status %d Location %q, want 308 to /app/", resp.StatusCode, resp.Header.Get("Location"))
	}
}

var (
	csrfInputRe = regexp.MustCompile(`name="csrfmiddlewaretoken" value="([^"]+)"`)
	loginFormRe = regexp.MustCompile(`<form action="([^"]+)" method="post" id="login-form">`)
)

func djangoCookie(client *http.Client, base, name string) *http.Cookie {
	u, _ := url.Parse(base)
	for _, ck := range client.Jar.Cookies(u) {
		if ck.Name == name {
			return ck
		}
	}
	return nil
}

// djangoLoginForm GETs the admin login page and returns the form's action and CSRF token.
func djangoLoginForm(t *testing.T, client *http.Client, c *Caddy) (action, token string) {
	t.Helper()
	req, _ := http.NewRequest("GET", c.URL+"/app/admin/login/?next=/app/admin/", nil)
	resp, body := fwDo(t, client, req)
	if resp.StatusCode != 200 {
		t.Fatalf("GET login page: status %d body %.500q", resp.StatusCode, body)
	}
	m := loginFormRe.FindSubmatch(body)
	if m == nil {
		t.Fatalf("login page has no login form:\n%.3000s", body)
	}
	action = strings.ReplaceAll(string(m[1]), "&amp;", "&")
	m = csrfInputRe.FindSubmatch(body)
	if m == nil {
		t.Fatalf("login page has no csrfmiddlewaretoken:\n%.3000s", body)
	}
	return action, string(m[1])
}

func testDjangoAdminLogin(t *testing.T, s *djangoSite) {
	c := s.c
	client := fwClient(t)

	// Anonymous: the admin index redirects to the login page, both under /app.
	req, _ := http.NewRequest("GET", c.URL+"/app/admin/", nil)
	resp, _ := fwDo(t, client, req)
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "/app/admin/login/?next=/app/admin/" {
		t.Errorf("anonymous GET /app/admin/: status %d Location %q, want 302 to /app/admin/login/?next=/app/admin/",
			resp.StatusCode, resp.Header.Get("Location"))
	}

	action, token := djangoLoginForm(t, client, c)
	if action != "/app/admin/login/?next=/app/admin/" {
		t.Errorf("login form action = %q, want /app/admin/login/?next=/app/admin/", action)
	}
	csrf := djangoCookie(client, c.URL, "csrftoken")
	if csrf == nil || csrf.Value == "" {
		t.Fatalf("no csrftoken cookie after GET of the login page; jar: %v", client.Jar.Cookies(mustURL(c.URL)))
	}

	postLogin := func(password, tok string) (*http.Response, []byte) {
		form := url.Values{
			"csrfmiddlewaretoken": {tok},
			"username":            {djangoAdminUser},
			"password":            {password},
			"next":                {"/app/admin/"},
		}
		req, _ := http.NewRequest("POST", c.URL+action, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return fwDo(t, client, req)
	}

	// Without the token the CSRF middleware refuses the POST.
	resp, body := postLogin(djangoAdminPassword, "")
	if resp.StatusCode != 403 {
		t.Errorf("login POST without csrfmiddlewaretoken: status %d, want 403; body %.300q", resp.StatusCode, body)
	}
	// A wrong password re-renders the form with an error.
	resp, body = postLogin("wrong-password", token)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Please enter the correct username and password") {
		t.Errorf("login POST with a wrong password: status %d, want 200 and the error message; body %.500q", resp.StatusCode, body)
	}

	action, token = djangoLoginForm(t, client, c)
	resp, body = postLogin(djangoAdminPassword, token)
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "/app/admin/" {
		t.Fatalf("login POST: status %d Location %q, want 302 to /app/admin/; body %.1000q",
			resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if sid := djangoCookie(client, c.URL, "sessionid"); sid == nil || sid.Value == "" {
		t.Errorf("no sessionid cookie after login; Set-Cookie: %q", resp.Header.Values("Set-Cookie"))
	}

	// Logged in: the admin index (served by either worker: the session is in SQLite).
	for i := 0; i < 3; i++ {
		req, _ = http.NewRequest("GET", c.URL+"/app/admin/", nil)
		resp, body = fwDo(t, client, req)
		page := string(body)
		if resp.StatusCode != 200 || !strings.Contains(page, "Site administration") ||
			!strings.Contains(page, "Log out") || !strings.Contains(page, "<strong>"+djangoAdminUser+"</strong>") {
			t.Fatalf("GET /app/admin/ after login: status %d, want 200 with the logged-in index; body %.2000q", resp.StatusCode, body)
		}
		// the model links carry the mount prefix
		if !strings.Contains(page, `href="/app/admin/auth/user/"`) {
			t.Errorf("admin index lacks the link /app/admin/auth/user/")
		}
	}
	// A page that reads the database: the superuser is listed.
	req, _ = http.NewRequest("GET", c.URL+"/app/admin/auth/user/", nil)
	resp, body = fwDo(t, client, req)
	if resp.StatusCode != 200 || !strings.Contains(string(body), ">"+djangoAdminUser+"</a>") {
		t.Errorf("GET /app/admin/auth/user/: status %d, want 200 listing %q; body %.1000q", resp.StatusCode, djangoAdminUser, body)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

type djangoUploadResult struct {
	ContentLength *string `json:"content_length"`
	Size          int     `json:"size"`
	SHA256        string  `json:"sha256"`
	Files         []struct {
		Field  string `json:"field"`
		Name   string `json:"name"`
		Size   int    `json:"size"`
		SHA256 string `json:"sha256"`
	} `json:"files"`
}

func testDjangoChunkedUpload(t *testing.T, s *djangoSite) {
	c := s.c
	data := fwRandom(t, 300*1024) // below the 1 MiB buffer_body default
	req, _ := http.NewRequest("POST", c.URL+"/app/upload/", onlyReader{bytes.NewReader(data)})
	req.ContentLength = -1
	req.TransferEncoding = []string{"chunked"}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, body := fwDo(t, fwClient(t), req)
	if resp.StatusCode != 200 {
		t.Fatalf("chunked POST /app/upload/: status %d body %.500q", resp.StatusCode, body)
	}
	var got djangoUploadResult
	fwJSON(t, "chunked POST /app/upload/", body, &got)
	if got.Size != len(data) || got.SHA256 != fwSHA256(data) {
		t.Errorf("Django received %d bytes (sha256 %s), sent %d chunked bytes (sha256 %s)",
			got.Size, got.SHA256, len(data), fwSHA256(data))
	}
	// Django reads exactly CONTENT_LENGTH bytes: the server must have set it from the
	// buffered body.
	if got.ContentLength == nil || *got.ContentLength != fmt.Sprint(len(data)) {
		cl := "<absent>"
		if got.ContentLength != nil {
			cl = *got.ContentLength
		}
		t.Errorf("CONTENT_LENGTH seen by Django = %s, want %d", cl, len(data))
	}
}

func testDjangoLargeUpload(t *testing.T, s *djangoSite) {
	c := s.c
	data := fwRandom(t, 3*1024*1024) // above buffer_body: streamed; above Django's in-memory limit
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, _ := mw.CreateFormFile("file", "big.bin")
	w.Write(data)
	mw.Close()
	req, _ := http.NewRequest("POST", c.URL+"/app/upload/", bytes.NewReader(buf.Bytes()))
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, body := fwDo(t, fwClient(t), req)
	if resp.StatusCode != 200 {
		t.Fatalf("multipart POST /app/upload/: status %d body %.500q", resp.StatusCode, body)
	}
	var got djangoUploadResult
	fwJSON(t, "multipart POST /app/upload/", body, &got)
	if len(got.Files) != 1 || got.Files[0].Size != len(data) || got.Files[0].SHA256 != fwSHA256(data) || got.Files[0].Name != "big.bin" {
		t.Errorf("Django received files %+v, want one big.bin of %d bytes sha256 %s", got.Files, len(data), fwSHA256(data))
	}
}

func testDjangoStatic(t *testing.T, s *djangoSite) {
	c := s.c
	// The admin login page links the CSS at the site root, outside the /app mount.
	resp, body := get(t, c.URL+"/app/admin/login/")
	m := regexp.MustCompile(`href="(/static/admin/css/base\.css)"`).FindSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("login page: status %d, no link to /static/admin/css/base.css:\n%.2000s", resp.StatusCode, body)
	}
	want, err := os.ReadFile(filepath.Join(s.staticRoot, "admin", "css", "base.css"))
	if err != nil {
		t.Fatal(err)
	}
	resp, body = get(t, c.URL+string(m[1]))
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: status %d", m[1], resp.StatusCode)
	}
	if !bytes.Equal(body, want) {
		t.Errorf("GET %s: %d bytes that differ from the collected file (%d bytes, with the test's marker)", m[1], len(body), len(want))
	}
	// file_server's headers, and none of Django's: every Django response has X-Frame-Options
	// (XFrameOptionsMiddleware) and Vary/Cross-Origin-Opener-Policy from its middleware.
	if resp.Header.Get("ETag") == "" || resp.Header.Get("Last-Modified") == "" {
		t.Errorf("GET %s: ETag %q Last-Modified %q, want both from file_server", m[1], resp.Header.Get("ETag"), resp.Header.Get("Last-Modified"))
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") {
		t.Errorf("GET %s: Content-Type %q, want text/css", m[1], resp.Header.Get("Content-Type"))
	}
	for _, h := range []string{"X-Frame-Options", "Cross-Origin-Opener-Policy", "X-Content-Type-Options"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("GET %s has Django's header %s: %q: the file did not come from file_server", m[1], h, v)
		}
	}
	// A conditional GET is answered by file_server with 304.
	req, _ := http.NewRequest("GET", c.URL+string(m[1]), nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	resp2, _ := fwDo(t, fwClient(t), req)
	if resp2.StatusCode != 304 {
		t.Errorf("conditional GET %s with If-None-Match: status %d, want 304", m[1], resp2.StatusCode)
	}
	// Under the mount, Django (DEBUG off) serves no static files.
	resp, _ = get(t, c.URL+"/app/static/admin/css/base.css")
	if resp.StatusCode != 404 {
		t.Errorf("GET /app/static/admin/css/base.css: status %d, want Django's 404", resp.StatusCode)
	}
}

// ---------------------------------------------------------------------------------------------
// The shipped example Caddyfiles, run as they are except for the addresses and the paths
// that the README's command takes relative to the repository root.

// exampleCaddyfile reads examples/<name>/Caddyfile and points it at the harness's ports and
// at absolute paths.
func exampleCaddyfile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "examples", name, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, must := range []string{"admin localhost:2019", "http://localhost:8080 {"} {
		if !strings.Contains(s, must) {
			t.Fatalf("examples/%s/Caddyfile lacks %q", name, must)
		}
	}
	s = strings.NewReplacer(
		"admin localhost:2019", "admin {ADMIN}\n\thttp_port {PORT}\n\thttps_port {HTTPS_PORT}",
		"http://localhost:8080 {", "http://127.0.0.1:{PORT} {",
		"{$WSGI_EXAMPLE_DIR:examples/"+name+"}", "{REPO}/examples/"+name,
		"{$WSGI_VENV:.venv}", "{VENV}",
	).Replace(s)
	return s
}

func TestFlaskExampleCaddyfile(t *testing.T) {
	c := startCaddy(t, exampleCaddyfile(t, "flask"))
	body := waitStatus(t, c.URL+"/", 200, 60*time.Second)
	if !strings.Contains(string(body), "Flask on caddy-wsgi") || !strings.Contains(string(body), `href="/upload"`) {
		t.Errorf("GET /: %.1000q", body)
	}
	resp, body := get(t, c.URL+"/events?count=2&interval=0.1")
	if resp.StatusCode != 200 || strings.Count(string(body), "event: tick") != 2 || !strings.Contains(string(body), "event: done") {
		t.Errorf("GET /events: status %d body %.500q", resp.StatusCode, body)
	}
}

func TestFrameworkHelloExample(t *testing.T) {
	c := startCaddy(t, exampleCaddyfile(t, "hello"))
	body := waitStatus(t, c.URL+"/some/path?x=1", 200, 60*time.Second)
	page := string(body)
	for _, want := range []string{"Hello, world!", "&#x27;/some/path&#x27;", "&#x27;x=1&#x27;", "&#x27;GET&#x27;"} {
		if !strings.Contains(page, want) {
			t.Errorf("hello page lacks %q:\n%s", want, page)
		}
	}
}

// TestFlaskExampleRelativePaths serves the Flask example with `chdir` and `venv` relative to
// Caddy's working directory, as the README's command (run from the repository root) does with
// `chdir examples/flask` and `venv .venv`. Both must be taken relative to Caddy's working
// directory (as Caddy does for every path), not the venv relative to chdir.
func TestFlaskExampleRelativePaths(t *testing.T) {
	c := startCaddy(t, withGlobal("http://127.0.0.1:{PORT} {\n\trespond \"placeholder\" 200\n}\n"))
	// caddy runs in c.Dir; express the paths relative to it
	relApp, err := filepath.Rel(c.Dir, filepath.Join(repoRoot(), "examples", "flask"))
	if err != nil {
		t.Fatal(err)
	}
	venvPython(t)
	relVenv, err := filepath.Rel(c.Dir, venvDir())
	if err != nil {
		t.Fatal(err)
	}
	cf := c.expandPlaceholders(t, withGlobal(`
http://127.0.0.1:{PORT} {
	wsgi app:create_app() {
		chdir `+fwQuote(relApp)+`
		venv `+fwQuote(relVenv)+`
		workers 1
	}
}
`))
	req, _ := http.NewRequest("POST", c.AdminURL+"/load", strings.NewReader(cf))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, body := fwDo(t, fwClient(t), req)
	if resp.StatusCode != 200 {
		t.Fatalf("POST /load: status %d: %s\nCaddyfile:\n%s", resp.StatusCode, body, cf)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, b, err := tryGet(c.URL+"/", 10*time.Second)
		if err == nil && code == 200 && strings.Contains(string(b), "Flask on caddy-wsgi") {
			return
		}
		if time.Now().After(deadline) {
			cause := ""
			for _, line := range strings.Split(c.Logs(), "\n") {
				if strings.Contains(line, "failed to start") {
					cause = line
				}
			}
			t.Fatalf("with chdir %q and venv %q (relative to caddy's working directory %s): GET / answers %d %v %.200q; last start error: %s",
				relApp, relVenv, c.Dir, code, err, b, cause)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDjangoExampleCaddyfile runs examples/django/Caddyfile as shipped (addresses, paths and
// the database location aside).
func TestDjangoExampleCaddyfile(t *testing.T) {
	db, static, _ := djangoPrepare(t)
	cf := exampleCaddyfile(t, "django")
	for _, must := range []string{"{$DJANGO_STATIC_ROOT:examples/django/staticfiles}", "env DJANGO_ALLOWED_HOSTS localhost,127.0.0.1\n"} {
		if !strings.Contains(cf, must) {
			t.Fatalf("examples/django/Caddyfile lacks %q", must)
		}
	}
	cf = strings.NewReplacer(
		"{$DJANGO_STATIC_ROOT:examples/django/staticfiles}", fwQuote(static),
		"env DJANGO_ALLOWED_HOSTS localhost,127.0.0.1\n", "env DJANGO_ALLOWED_HOSTS localhost,127.0.0.1\n\t\t\tenv DJANGO_DB_PATH "+fwQuote(db)+"\n",
	).Replace(cf)
	c := startCaddy(t, cf)
	body := waitStatus(t, c.URL+"/app/", 200, 60*time.Second)
	if !strings.Contains(string(body), `<code id="script-name">/app</code>`) {
		t.Errorf("GET /app/: %.1000q", body)
	}
	checks := []struct {
		path     string
		status   int
		location string
	}{
		{"/", 302, "/app/"},
		{"/app", 308, "/app/"},
		{"/app/admin/", 302, "/app/admin/login/?next=/app/admin/"},
		{"/app/admin/login/", 200, ""},
		{"/static/admin/css/base.css", 200, ""},
		{"/static/admin/css/missing.css", 404, ""},
	}
	for _, ck := range checks {
		resp, _ := get(t, c.URL+ck.path)
		if resp.StatusCode != ck.status || resp.Header.Get("Location") != ck.location {
			t.Errorf("GET %s: status %d Location %q, want %d %q", ck.path, resp.StatusCode, resp.Header.Get("Location"), ck.status, ck.location)
		}
	}
}
