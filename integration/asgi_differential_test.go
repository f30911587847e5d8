//go:build linux

package integration

// Differential test of the ASGI HTTP scope: the same probe app
// (testdata/apps/asgi_scope_probe.py, which answers with its scope as JSON, bytes as latin-1
// strings) is served by Uvicorn (the reference, pinned in requirements-test.txt, pure-Python
// h11 protocol) and by caddy's asgi directive; the same raw requests go to both and the scopes
// are compared key by key.
//
//   - A key that differs must be in asgiScopeAllowed, with its reason and the check it must
//     still pass (client: each one's own peer port; server: each one's listening address).
//   - Where our scope breaks the ASGI spec (specs/www.rst of asgiref: "HTTP Connection
//     Scope"), the assertion runs through asgiSpec (subtests spec_<id>, see
//     asgi_frameworks_test.go): it fails while the bug is there.
//   - A few absolute expectations make sure that agreeing with Uvicorn is not taken for
//     correctness.
//
// The prefix cases go to caddy under handle_path /prefix/* and to a second Uvicorn started
// with --root-path /prefix without the prefix (as a proxy that strips it would send them).

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// asgiDiffCase is one raw request. {P} is replaced by the mount prefix ("/prefix" for caddy
// in a prefix case, "" otherwise), {HOST} by the server's host:port.
type asgiDiffCase struct {
	name    string
	prefix  bool // under handle_path /prefix/* (caddy) and --root-path /prefix (Uvicorn)
	chunked bool // the request body is chunked
	raw     string
	// pathSpec is the asgiSpec id under which the path of a prefix case is checked
	// (default path_includes_root_path).
	pathSpec string
}

func asgiDiffCases() []asgiDiffCase {
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	// Three chunks of 1500 bytes: past the buffer_body of 1KiB below, so caddy streams it.
	var streamed strings.Builder
	for i := 0; i < 3; i++ {
		fmt.Fprintf(&streamed, "5dc\r\n%s\r\n", strings.Repeat(string(rune('a'+i)), 1500))
	}
	return []asgiDiffCase{
		{name: "get-query", raw: "GET {P}/probe/path?a=1&b=%20x&c=caf%C3%A9&a=2&empty=&flag&s=%2F HTTP/1.1\r\n" +
			"Host: {HOST}\r\nUser-Agent: asgi-diff/1.0\r\nAccept: */*\r\n\r\n"},
		{name: "encoded-path", raw: "GET {P}/caf%C3%A9/a%2Fb/%7Euser/sp%20ace/%25zz/plus+sign/%FF?q=%2F&x=caf%C3%A9 HTTP/1.1\r\n" +
			"Host: {HOST}\r\n\r\n"},
		{name: "dot-segments", raw: "GET {P}/a/./b/../c//d HTTP/1.1\r\nHost: {HOST}\r\n\r\n"},
		{name: "repeated-headers", raw: "GET {P}/headers HTTP/1.1\r\nHost: {HOST}\r\n" +
			"X-Multi: first\r\nX-Multi: second, third\r\nAccept: text/html\r\nAccept: application/json\r\n" +
			"X-Case: MiXeD Case value  \r\nConnection: keep-alive\r\nX-Empty:\r\nX-MiXeD-NaMe: v\r\n\r\n"},
		{name: "underscore-header", raw: "GET {P}/underscore HTTP/1.1\r\nHost: {HOST}\r\n" +
			"X_Forwarded_For: 203.0.113.9\r\nX-Dash-Header: dash\r\nX_Under: under\r\n\r\n"},
		{name: "cookie", raw: "GET {P}/cookie HTTP/1.1\r\nHost: {HOST}\r\n" +
			"Cookie: a=1; b=caf%C3%A9; c=\"quoted value\"\r\n\r\n"},
		// Two Cookie field lines: not what a user agent sends over HTTP/1.1, but what the
		// spec says to preserve (HTTP/2 splits cookies so).
		{name: "cookie-twice", raw: "GET {P}/cookies HTTP/1.1\r\nHost: {HOST}\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n"},
		{name: "non-ascii-header", raw: "GET {P}/latin HTTP/1.1\r\nHost: {HOST}\r\n" +
			"X-Latin: caf\xe9\r\nX-Utf8: caf\xc3\xa9\r\n\r\n"},
		{name: "post-form", raw: "POST {P}/form?x=1 HTTP/1.1\r\nHost: {HOST}\r\n" +
			"Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n" +
			"Content-Length: 27\r\n\r\nname=caf%C3%A9&msg=hi+there"},
		{name: "post-binary", raw: "PUT {P}/binary HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/octet-stream\r\n" +
			"Content-Length: 256\r\n\r\n" + string(binary)},
		{name: "post-chunked", chunked: true, raw: "POST {P}/chunked HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: text/plain\r\n" +
			"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n1\r\n!\r\n0\r\n\r\n"},
		{name: "post-chunked-streamed", chunked: true, raw: "POST {P}/streamed HTTP/1.1\r\nHost: {HOST}\r\n" +
			"Transfer-Encoding: chunked\r\n\r\n" + streamed.String() + "0\r\n\r\n"},
		{name: "head", raw: "HEAD {P}/head?x=1 HTTP/1.1\r\nHost: {HOST}\r\n\r\n"},
		{name: "http10", raw: "GET {P}/old?v=1 HTTP/1.0\r\nHost: {HOST}\r\n\r\n"},
		{name: "http10-no-host", raw: "GET {P}/nohost HTTP/1.0\r\n\r\n"},
		{name: "other-host", raw: "GET {P}/vhost HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"},

		{name: "prefix-get", prefix: true, raw: "GET {P}/a%2Fb/caf%C3%A9?q=caf%C3%A9 HTTP/1.1\r\nHost: {HOST}\r\n\r\n"},
		{name: "prefix-slash", prefix: true, raw: "GET {P}/ HTTP/1.1\r\nHost: {HOST}\r\n\r\n"},
		{name: "prefix-post", prefix: true, raw: "POST {P}/form HTTP/1.1\r\nHost: {HOST}\r\n" +
			"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"},
		{name: "prefix-head", prefix: true, raw: "HEAD {P}/head HTTP/1.1\r\nHost: {HOST}\r\n\r\n"},
		// The app's own path starts with the mount prefix: /prefix/prefix/x is the app's
		// /prefix/x, so path is /prefix/prefix/x (the prefix is stripped once).
		{name: "prefix-doubled", prefix: true, pathSpec: "prefix_stripped_once", raw: "GET {P}/prefix/x HTTP/1.1\r\nHost: {HOST}\r\n\r\n"},
	}
}

// asgiScopeAllowed lists the scope keys whose values may differ between Uvicorn and ours,
// with the reason. Each still passes the check in compareASGIScopes.
var asgiScopeAllowed = map[string]string{
	// Each connection has its own ephemeral port. Checked: each server's client is
	// ["127.0.0.1", the local port of the test's socket].
	"client": "the client's ephemeral port differs between the two connections",
	// Each server listens on its own port. Checked (spec_server_is_listening_address): each
	// server's value is its own listening address, ["127.0.0.1", its port].
	"server": "each server listens on its own port",
	// The lifespan namespace (optional in the spec). Uvicorn copies its lifespan state ({}
	// here: the probe stores nothing); ours is {} until lifespan lands. Checked: a dict, or
	// absent in ours.
	"state": "lifespan state is server-specific (optional key)",
	// Server extensions (optional): Uvicorn's h11 protocol offers none; ours may offer some.
	// Checked: a dict when present.
	"extensions": "server-specific optional extensions",
	// asgi.spec_version tells what the server implements (optional; "2.0" when missing).
	// Checked: asgi.version is "3.0" in both; spec_version, when present, is "2.x".
	"asgi": "spec_version is what each server implements",
}

// asgiHeaderAllowed: the header differences that are allowed, each checked in the test.
var asgiHeaderAllowed = map[string]string{
	// A name with "_" (X_Under: under): Uvicorn passes it; ours drops it. Deliberate: the
	// request crosses Caddy as CGI names too, where x_under and x-under are one key, and a
	// client could spoof a dashed header (X_Forwarded_For for X-Forwarded-For). Daphne and
	// Django's ASGIRequest drop them as well (CVE-2015-0219). Checked: ours has neither the
	// name nor a dashed alias that the client did not send.
	"underscore": "underscored header names are dropped (anti-spoofing, as Daphne and Django do)",
	// The spec: "Order of header values must be preserved from the original HTTP request;
	// order of header names is not important". The values of one name are compared in order
	// (spec_duplicate_headers_preserved); the order of different names is not.
	"order": "the spec says the order of header names is not important",
}

// asgiProbeResult is what the probe answered, with the connection's ports.
type asgiProbeResult struct {
	Scope    map[string]any `json:"scope"`
	Kinds    map[string]any `json:"kinds"`
	Body     string         `json:"body"`
	Messages []string       `json:"messages"`

	addr       string // host:port of the server
	clientPort int    // local port of the test's socket
}

// headers returns the scope's headers in order, with the server's host:port as {HOST}.
func (r *asgiProbeResult) headers() [][2]string {
	var out [][2]string
	list, _ := r.Scope["headers"].([]any)
	for _, item := range list {
		pair, _ := item.([]any)
		if len(pair) != 2 {
			out = append(out, [2]string{fmt.Sprintf("(malformed %v)", item), ""})
			continue
		}
		n, _ := pair[0].(string)
		v, _ := pair[1].(string)
		out = append(out, [2]string{n, strings.ReplaceAll(v, r.addr, "{HOST}")})
	}
	return out
}

// headersByName groups the header values by name, in order.
func headersByName(h [][2]string) map[string][]string {
	m := map[string][]string{}
	for _, p := range h {
		m[p[0]] = append(m[p[0]], p[1])
	}
	return m
}

// startUvicorn runs `python -m uvicorn` (h11, asyncio, no proxy headers) on a free loopback
// port serving asgi_scope_probe:app, with rootPath as --root-path when set; it is stopped
// (SIGTERM, then SIGKILL) at cleanup.
func startUvicorn(t *testing.T, rootPath string) string {
	t.Helper()
	python := venvPython(t)
	if err := exec.Command(python, "-c", "import uvicorn, h11").Run(); err != nil {
		t.Fatalf("uvicorn is not in the test venv (%v): install requirements-test.txt", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"-m", "uvicorn", "--host", host, "--port", port, "--http", "h11", "--loop", "asyncio",
		"--lifespan", "on", "--no-proxy-headers", "--no-access-log", "--timeout-graceful-shutdown", "5",
		"--app-dir", appsDir()}
	if rootPath != "" {
		args = append(args, "--root-path", rootPath)
	}
	cmd := exec.Command(python, append(args, "asgi_scope_probe:app")...)
	cmd.Dir = t.TempDir()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "UVICORN_") && !strings.HasPrefix(kv, "FORWARDED_ALLOW_IPS=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	startPeer(t, "uvicorn", cmd, addr)
	return addr
}

// asgiProbe sends one raw request to addr and decodes the scope from the x-scope header.
func asgiProbe(t *testing.T, addr, prefix string, r asgiDiffCase) *asgiProbeResult {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: dial %s: %v", r.name, addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	raw := strings.NewReplacer("{P}", prefix, "{HOST}", addr).Replace(r.raw)
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatalf("%s: write to %s: %v", r.name, addr, err)
	}
	method, _, _ := strings.Cut(raw, " ")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s: read response from %s: %v", r.name, addr, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s: read body from %s: %v", r.name, addr, err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s answered %d: %.500q", r.name, addr, resp.StatusCode, body)
	}
	js, err := base64.StdEncoding.DecodeString(resp.Header.Get("X-Scope"))
	if err != nil || len(js) == 0 {
		t.Fatalf("%s: %s: no x-scope header (%v)", r.name, addr, err)
	}
	if method != "HEAD" && string(js) != string(body) {
		t.Errorf("%s: %s: body and x-scope header differ", r.name, addr)
	}
	res := &asgiProbeResult{addr: addr, clientPort: conn.LocalAddr().(*net.TCPAddr).Port}
	if err := json.Unmarshal(js, res); err != nil {
		t.Fatalf("%s: %s: probe answer is not JSON: %v: %.500q", r.name, addr, err, js)
	}
	return res
}

// asgiDiffRow is one compared value, for the log table.
type asgiDiffRow struct{ request, key, uvicorn, ours, verdict string }

func asgiShow(v any, ok bool) string {
	if !ok {
		return "(absent)"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// TestASGIScopeVsUvicorn compares the scope of every request of asgiDiffCases under Uvicorn
// and under caddy's asgi directive.
func TestASGIScopeVsUvicorn(t *testing.T) {
	t.Parallel()
	uvRoot := startUvicorn(t, "")
	uvPrefix := startUvicorn(t, "/prefix")
	block := `asgi asgi_scope_probe:app {
			venv {VENV}
			chdir {APPS}
			workers 1
			buffer_body 1KiB
		}`
	// Any host (the other-host and no-host cases); the same block twice is one pool.
	c := startCaddy(t, globalBlock()+`http://:{PORT} {
	handle_path /prefix/* {
		`+block+`
	}
	handle {
		`+block+`
	}
}
`)
	waitStatus(t, c.URL+"/ready", 200, 60*time.Second)
	caddyAddr := fmt.Sprintf("127.0.0.1:%d", c.Port)

	type pair struct {
		c      asgiDiffCase
		uv, us *asgiProbeResult
	}
	var pairs []pair
	for _, r := range asgiDiffCases() {
		uvAddr, ourPrefix := uvRoot, ""
		if r.prefix {
			uvAddr, ourPrefix = uvPrefix, "/prefix"
		}
		pairs = append(pairs, pair{r, asgiProbe(t, uvAddr, "", r), asgiProbe(t, caddyAddr, ourPrefix, r)})
	}

	var rows []asgiDiffRow
	row := func(p pair, key, verdict string, uv any, uvOK bool, us any, usOK bool) {
		rows = append(rows, asgiDiffRow{p.c.name, key, asgiShow(uv, uvOK), asgiShow(us, usOK), verdict})
	}

	// Ordinary assertions: every key identical unless allowed; the allowed ones checked.
	for _, p := range pairs {
		name, uv, us := p.c.name, p.uv, p.us
		for _, k := range []string{"type", "asgi", "http_version", "method", "path", "query_string", "headers"} {
			if _, ok := us.Scope[k]; !ok {
				t.Errorf("%s: ours lacks the required scope key %q", name, k)
			}
		}
		for _, k := range sortedKeys(uv.Scope, us.Scope) {
			uvV, uvOK := uv.Scope[k]
			usV, usOK := us.Scope[k]
			switch k {
			case "headers":
				continue // below, name by name
			case "path":
				if p.c.prefix {
					continue // spec_path_includes_root_path / spec_prefix_stripped_once
				}
			case "server":
				if !reflect.DeepEqual(uvV, []any{"127.0.0.1", float64(portOf(uv.addr))}) {
					t.Errorf("%s: Uvicorn's server %v, want [127.0.0.1 %d] (reference broken?)", name, uvV, portOf(uv.addr))
				}
				if !reflect.DeepEqual(usV, []any{"127.0.0.1", float64(c.Port)}) {
					row(p, k, "SPEC: spec_server_is_listening_address", uvV, uvOK, usV, usOK)
				} else if !reflect.DeepEqual(uvV, usV) {
					row(p, k, "allowed: "+asgiScopeAllowed[k], uvV, uvOK, usV, usOK)
				}
				continue
			case "client":
				for _, s := range []*asgiProbeResult{uv, us} {
					if want := []any{"127.0.0.1", float64(s.clientPort)}; !reflect.DeepEqual(s.Scope["client"], want) {
						t.Errorf("%s: %s: client %v, want %v (the test's socket)", name, s.addr, s.Scope["client"], want)
					}
				}
				if !reflect.DeepEqual(uvV, usV) {
					row(p, k, "allowed: "+asgiScopeAllowed[k], uvV, uvOK, usV, usOK)
				}
				continue
			case "state", "extensions":
				if _, ok := usV.(map[string]any); usOK && !ok {
					t.Errorf("%s: ours %s = %v, want a dict", name, k, usV)
				}
				if !reflect.DeepEqual(uvV, usV) {
					row(p, k, "allowed: "+asgiScopeAllowed[k], uvV, uvOK, usV, usOK)
				}
				continue
			case "asgi":
				um, _ := uvV.(map[string]any)
				om, _ := usV.(map[string]any)
				if om["version"] != "3.0" || um["version"] != "3.0" {
					t.Errorf("%s: asgi.version: Uvicorn %v, ours %v, want 3.0", name, um["version"], om["version"])
				}
				if sv, ok := om["spec_version"]; ok {
					if s, _ := sv.(string); !strings.HasPrefix(s, "2.") {
						t.Errorf("%s: ours asgi.spec_version %v, want 2.x", name, sv)
					}
				}
				if !reflect.DeepEqual(uvV, usV) {
					row(p, k, "allowed: "+asgiScopeAllowed[k], uvV, uvOK, usV, usOK)
				}
				continue
			}
			if uvOK != usOK || !reflect.DeepEqual(uvV, usV) {
				t.Errorf("%s: scope[%q]: Uvicorn %s, ours %s", name, k, asgiShow(uvV, uvOK), asgiShow(usV, usOK))
				row(p, k, "NOT ALLOWED", uvV, uvOK, usV, usOK)
			}
		}
		// Python types of the values (bytes vs str, int, sequences).
		for k, uk := range uv.Kinds {
			if k == "state" || k == "extensions" {
				continue
			}
			if ok, has := us.Kinds[k]; has && !reflect.DeepEqual(uk, ok) {
				t.Errorf("%s: type of scope[%q]: Uvicorn %v, ours %v", name, k, uk, ok)
			}
		}
		// The body the app reads (the number of http.request messages is framing: not compared).
		if uv.Body != us.Body {
			t.Errorf("%s: body read by the app: Uvicorn %d bytes, ours %d bytes (%.80q vs %.80q)", name, len(uv.Body), len(us.Body), uv.Body, us.Body)
		}
		if len(us.Messages) == 0 || us.Messages[len(us.Messages)-1] != "http.request" {
			t.Errorf("%s: ours receive() messages %v, want http.request ones", name, us.Messages)
		}

		// Headers, name by name: a name the client sent once (other than the body framing
		// ones) must come with the same value; underscored names are dropped.
		uvH, usH := headersByName(uv.headers()), headersByName(us.headers())
		for _, h := range us.headers() {
			if h[0] != strings.ToLower(h[0]) {
				t.Errorf("%s: ours header name %q is not lowercase", name, h[0])
			}
		}
		for n, uvVals := range uvH {
			usVals, ok := usH[n]
			switch {
			case strings.Contains(n, "_"):
				alias := strings.ReplaceAll(n, "_", "-")
				if ok || !reflect.DeepEqual(usH[alias], uvH[alias]) {
					t.Errorf("%s: header %q: ours %q and %q = %q, want it dropped and no alias (Uvicorn %q = %q)", name, n, usVals, alias, usH[alias], alias, uvH[alias])
				}
				row(p, "headers["+n+"]", "allowed: "+asgiHeaderAllowed["underscore"], uvVals, true, usVals, ok)
			case len(uvVals) > 1:
				if !reflect.DeepEqual(uvVals, usVals) {
					row(p, "headers["+n+"]", "SPEC: spec_duplicate_headers_preserved", uvVals, true, usVals, ok)
				}
			case p.c.chunked && (n == "transfer-encoding" || n == "content-length"):
				if !reflect.DeepEqual(uvVals, usVals) {
					row(p, "headers["+n+"]", "SPEC: spec_headers_as_received", uvVals, true, usVals, ok)
				}
			default:
				if !reflect.DeepEqual(uvVals, usVals) {
					t.Errorf("%s: header %q: Uvicorn %q, ours %q", name, n, uvVals, usVals)
					row(p, "headers["+n+"]", "NOT ALLOWED", uvVals, true, usVals, ok)
				}
			}
		}
		for n, usVals := range usH {
			if _, ok := uvH[n]; !ok {
				row(p, "headers["+n+"]", "SPEC: spec_headers_as_received (not sent by the client)", nil, false, usVals, true)
			}
		}
		uvNames, usNames := headerNames(uv.headers()), headerNames(us.headers())
		if uvNames != usNames {
			row(p, "headers (order of names)", "allowed: "+asgiHeaderAllowed["order"], uvNames, true, usNames, true)
		}
	}

	// Absolute expectations on ours, so that agreement with Uvicorn is not vacuous.
	byName := map[string]pair{}
	for _, p := range pairs {
		byName[p.c.name] = p
	}
	expect := []struct {
		request, key string
		want         any
	}{
		{"get-query", "query_string", "a=1&b=%20x&c=caf%C3%A9&a=2&empty=&flag&s=%2F"},
		{"get-query", "root_path", ""},
		{"encoded-path", "path", "/café/a/b/~user/sp ace/%zz/plus+sign/\ufffd"},
		{"encoded-path", "raw_path", "/caf%C3%A9/a%2Fb/%7Euser/sp%20ace/%25zz/plus+sign/%FF"},
		{"dot-segments", "path", "/a/./b/../c//d"},
		{"post-binary", "method", "PUT"},
		{"head", "method", "HEAD"},
		{"http10", "http_version", "1.0"},
		{"get-query", "http_version", "1.1"},
		{"prefix-get", "root_path", "/prefix"},
		{"prefix-get", "raw_path", "/prefix/a%2Fb/caf%C3%A9"},
		{"prefix-get", "query_string", "q=caf%C3%A9"},
	}
	for _, e := range expect {
		if got := byName[e.request].us.Scope[e.key]; !reflect.DeepEqual(got, e.want) {
			t.Errorf("%s: ours scope[%q] = %s, want %s", e.request, e.key, asgiShow(got, true), asgiShow(e.want, true))
		}
	}
	if got := headersByName(byName["non-ascii-header"].us.headers()); !reflect.DeepEqual(got["x-latin"], []string{"caf\u00e9"}) ||
		!reflect.DeepEqual(got["x-utf8"], []string{"caf\u00c3\u00a9"}) {
		t.Errorf("non-ascii-header: ours x-latin %q x-utf8 %q, want the raw bytes (as latin-1) caf\\xe9 and caf\\xc3\\xa9", got["x-latin"], got["x-utf8"])
	}
	if b := []rune(byName["post-binary"].us.Body); len(b) != 256 || b[0] != 0 || b[255] != 0xff {
		t.Errorf("post-binary: ours body %d bytes, want the 256 bytes 0x00..0xff", len(b))
	}
	if b := byName["post-chunked-streamed"].us.Body; len(b) != 4500 {
		t.Errorf("post-chunked-streamed: ours body %d bytes, want 4500", len(b))
	}

	// --- spec requirements that pyruntime did not meet when this test was written -----------

	// "path: HTTP request target excluding any query string, with percent-encoded sequences
	// and UTF-8 byte sequences decoded"; "PATH_INFO can be derived by stripping root_path
	// from path": path includes root_path (Uvicorn --root-path: path = root_path + path).
	for _, id := range []string{"path_includes_root_path", "prefix_stripped_once"} {
		asgiSpec(t, id, func(t *testing.T) {
			for _, p := range pairs {
				if ps := p.c.pathSpec; !p.c.prefix || (ps != id && (ps != "" || id != "path_includes_root_path")) {
					continue
				}
				uvV, usV := p.uv.Scope["path"], p.us.Scope["path"]
				root, _ := p.us.Scope["root_path"].(string)
				if s, _ := usV.(string); !reflect.DeepEqual(uvV, usV) || !strings.HasPrefix(s, root+"/") {
					t.Errorf("%s: path: ours %s (root_path %q, raw_path %s), Uvicorn %s; want the full path, root_path included once",
						p.c.name, asgiShow(usV, true), root, asgiShow(p.us.Scope["raw_path"], true), asgiShow(uvV, true))
					row(p, "path", "SPEC: spec_"+id, uvV, true, usV, true)
				}
			}
		})
	}
	// "headers: ... Duplicates are possible and must be preserved in the message as received."
	asgiSpec(t, "duplicate_headers_preserved", func(t *testing.T) {
		for _, p := range pairs {
			uvH, usH := headersByName(p.uv.headers()), headersByName(p.us.headers())
			for n, vals := range uvH {
				if len(vals) > 1 && !reflect.DeepEqual(vals, usH[n]) {
					t.Errorf("%s: header %q sent %d times: ours %q, Uvicorn %q; want one [name, value] item per field line, in order",
						p.c.name, n, len(vals), usH[n], vals)
				}
			}
		}
	})
	// "The ASGI design decision is to transport both request and response headers as lists
	// of 2-element [name, value] lists and preserve headers exactly as they were provided."
	// A header the client did not send, or the framing headers of a chunked request rewritten.
	asgiSpec(t, "headers_as_received", func(t *testing.T) {
		for _, p := range pairs {
			uvH, usH := headersByName(p.uv.headers()), headersByName(p.us.headers())
			for n, vals := range usH {
				if _, ok := uvH[n]; !ok {
					t.Errorf("%s: ours has header %q = %q, which the client did not send", p.c.name, n, vals)
				}
			}
			if p.c.chunked {
				for _, n := range []string{"transfer-encoding", "content-length"} {
					if _, sent := uvH[n]; sent && !reflect.DeepEqual(uvH[n], usH[n]) {
						t.Errorf("%s: header %q: ours %q, sent %q", p.c.name, n, usH[n], uvH[n])
					}
				}
			}
		}
	})
	// "server: ... [host, port], where host is the listening address for this server, and
	// port is the integer listening port" (not the Host header).
	asgiSpec(t, "server_is_listening_address", func(t *testing.T) {
		for _, p := range pairs {
			want := []any{"127.0.0.1", float64(c.Port)}
			if got := p.us.Scope["server"]; !reflect.DeepEqual(got, want) {
				t.Errorf("%s: ours server %s, want %s (the listening address; Uvicorn: %s)",
					p.c.name, asgiShow(got, true), asgiShow(want, true), asgiShow(p.uv.Scope["server"], true))
			}
		}
	})

	// The table, ready to paste into a note (Markdown).
	cells := make([][5]string, len(rows))
	for i, r := range rows {
		cells[i] = [5]string{r.request, r.key, r.uvicorn, r.ours, r.verdict}
	}
	t.Logf("scope differences, Uvicorn vs caddy asgi (%d requests):%s", len(pairs), diffTable("Uvicorn", "caddy asgi", 100, cells))
}

func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

func headerNames(h [][2]string) string {
	names := make([]string, len(h))
	for i, p := range h {
		names[i] = p[0]
	}
	return strings.Join(names, ",")
}
