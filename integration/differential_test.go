//go:build linux

package integration

// Differential test: the same probe app (testdata/gunicorn/probe.py, which answers with its
// WSGI environ as JSON) is served by gunicorn (the reference, pinned in requirements-test.txt)
// and by caddy-wsgi, the same raw requests are sent to both, and the environs are compared
// key by key. Every difference must be listed in differentialAllowed with its reason; every
// key PEP 3333 requires must be in ours.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// diffRequest is one raw HTTP/1.1 request; {HOST} is replaced by the server's host:port.
type diffRequest struct {
	name string
	raw  string
}

var differentialRequests = []diffRequest{
	{"get-query", "GET /probe/path?a=1&b=%20x&c=caf%C3%A9&a=2&empty=&flag HTTP/1.1\r\n" +
		"Host: {HOST}\r\nUser-Agent: diff-test/1.0\r\nAccept: */*\r\n\r\n"},
	{"encoded-path", "GET /caf%C3%A9/a%2Fb/%7Euser/sp%20ace/%25zz/plus+sign?q=%2F&x=caf%C3%A9 HTTP/1.1\r\n" +
		"Host: {HOST}\r\n\r\n"},
	{"repeated-headers", "GET /headers HTTP/1.1\r\nHost: {HOST}\r\n" +
		"X-Multi: first\r\nX-Multi: second\r\nAccept: text/html\r\nAccept: application/json\r\n" +
		"Cookie: a=1\r\nX-Custom-Header: MiXeD Case value  \r\n\r\n"},
	{"underscore-header", "GET /underscore HTTP/1.1\r\nHost: {HOST}\r\n" +
		"X_Forwarded_For: 203.0.113.9\r\nX-Dash-Header: dash\r\nX_Underscore: under\r\n\r\n"},
	{"post-form", "POST /form?x=1 HTTP/1.1\r\nHost: {HOST}\r\n" +
		"Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n" +
		"Content-Length: 27\r\n\r\nname=caf%C3%A9&msg=hi+there"},
	{"post-chunked", "POST /chunked HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: text/plain\r\n" +
		"Transfer-Encoding: chunked\r\n\r\n" +
		"5\r\nhello\r\n7\r\n, world\r\n1\r\n!\r\n0\r\n\r\n"},
	{"post-empty", "POST /empty HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n\r\n"},
	{"http10", "GET /old?v=1 HTTP/1.0\r\nHost: {HOST}\r\nConnection: keep-alive\r\n\r\n"},
	{"obs-text-header", "GET /latin HTTP/1.1\r\nHost: {HOST}\r\nX-Latin: caf\xe9 \xc3\xa9\r\n\r\n"},
	{"delete", "DELETE /item/42?h=1 HTTP/1.1\r\nHost: {HOST}\r\nAccept-Language: fr-CH, fr;q=0.9\r\n\r\n"},
}

// allowedDiff explains why a key may differ. request "" means: in every request. gunicorn and
// ours, when set, are the values (as shown in the table: quoted, or "(absent)") the
// difference must have; "" means any.
type allowedDiff struct {
	key, request   string
	gunicorn, ours string
	reason         string
}

// differentialAllowed is the explicit list of expected differences between gunicorn's environ
// and ours. A difference not listed here fails the test.
var differentialAllowed = []allowedDiff{
	// --- server identity and server objects: necessarily different --------------------------
	{key: "SERVER_SOFTWARE", reason: "each server names itself (gunicorn/x.y.z vs caddy-wsgi/x.y.z)"},
	{key: "wsgi.input", reason: "repr of a server-specific stream object (class and address); the body read through it is compared separately (probe.body_*)"},
	{key: "wsgi.errors", reason: "repr of a server-specific stream object (gunicorn's wrapper vs the worker's stderr, which Caddy logs)"},
	{key: "wsgi.file_wrapper", reason: "repr of a server-specific class; both servers provide one (PEP 3333: optional)"},
	{key: "REMOTE_PORT", reason: "the client's ephemeral port differs between the two connections"},
	{key: "gunicorn.socket", ours: "(absent)", reason: "gunicorn-specific: its client socket; ours has none (Caddy owns the connection)"},
	{key: "wsgi.early_hints", reason: "repr of a server-specific callable (gunicorn's closure, our bound method); both send 103 Early Hints (hints_test.go)"},

	// --- request body framing --------------------------------------------------------------
	// For a request without a body Go knows the body is empty and passes CONTENT_LENGTH "0";
	// gunicorn omits the key. PEP 3333 allows both ("may be empty or absent"); an app reads 0
	// bytes either way.
	{key: "CONTENT_LENGTH", gunicorn: "(absent)", ours: `"0"`, reason: "no body: ours passes the known length 0, gunicorn omits the key (PEP 3333: may be absent)"},
	// A chunked body up to buffer_body is read by Go first and passed with its length, so apps
	// that only trust CONTENT_LENGTH (Django, Werkzeug without wsgi.input_terminated) see it.
	{key: "CONTENT_LENGTH", request: "post-chunked", gunicorn: "(absent)", reason: "chunked body within buffer_body: ours passes its length, gunicorn leaves it unset"},
	{key: "HTTP_TRANSFER_ENCODING", request: "post-chunked", gunicorn: `"chunked"`, ours: "(absent)", reason: "hop-by-hop; ours de-chunked the body and gives CONTENT_LENGTH instead (it keeps the header only for a streamed body)"},
}

// pep3333Required are the environ keys PEP 3333 requires in every request (CONTENT_TYPE,
// CONTENT_LENGTH and QUERY_STRING "may be empty or absent"; HTTP_* follow the request).
var pep3333Required = []string{
	"REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL",
	"wsgi.version", "wsgi.url_scheme", "wsgi.input", "wsgi.errors",
	"wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once",
}

// pep3333Conditional are keys PEP 3333 lists that must be in ours whenever gunicorn sets them.
func pep3333Conditional(key string) bool {
	switch key {
	case "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH":
		return true
	}
	return strings.HasPrefix(key, "HTTP_")
}

func allowKey(key, request string) string { return key + "|" + request }

func diffAllowedReason(key, request, gunicorn, ours string) (string, bool) {
	for _, a := range differentialAllowed {
		if a.key == key && (a.request == "" || a.request == request) &&
			(a.gunicorn == "" || a.gunicorn == gunicorn) && (a.ours == "" || a.ours == ours) {
			return a.reason, true
		}
	}
	return "", false
}

// startGunicorn runs <venv>/bin/gunicorn -w 2 on a free port serving probe:application and
// stops it (SIGTERM, then SIGKILL) at cleanup.
func startGunicorn(t *testing.T) (addr string) {
	t.Helper()
	gunicorn := filepath.Join(filepath.Dir(venvPython(t)), "gunicorn")
	if _, err := os.Stat(gunicorn); err != nil {
		t.Fatalf("gunicorn not in the test venv (%v): install requirements-test.txt", err)
	}
	port := freePort(t)
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	// --no-control-socket: gunicorn 24+ would otherwise create ~/.gunicorn/gunicorn.ctl
	cmd := exec.Command(gunicorn, "-w", "2", "-b", addr, "--access-logfile", "-",
		"--no-control-socket", "probe:application")
	cmd.Dir = filepath.Join(repoRoot(), "integration", "testdata", "gunicorn")
	for _, kv := range os.Environ() {
		// gunicorn takes SCRIPT_NAME and its options from the environment
		if !strings.HasPrefix(kv, "SCRIPT_NAME=") && !strings.HasPrefix(kv, "GUNICORN_CMD_ARGS=") &&
			!strings.HasPrefix(kv, "HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "HOME="+t.TempDir())
	startPeer(t, "gunicorn", cmd, addr)
	return addr
}

// sortedKeys is the sorted union of the keys of a and b: every key a differential test
// compares.
func sortedKeys[V any](a, b map[string]V) []string {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// diffTable renders the rows of a differential test (request, key, the peer's value, ours,
// verdict) as a Markdown table to paste into a note; cells past max are cut, except
// verdicts that explain an allowed difference.
func diffTable(peer, ours string, max int, rows [][5]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n| request | key | %s | %s | verdict |\n|---|---|---|---|---|\n", peer, ours)
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r[0], mdCell(r[1], max), mdCell(r[2], max), mdCell(r[3], max), mdCell(r[4], max))
	}
	return b.String()
}

// mdCell escapes a Markdown table cell and cuts it past max (not an "allowed: …" reason).
func mdCell(s string, max int) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	if len(s) > max && !strings.HasPrefix(s, "allowed") {
		s = s[:max-3] + "..."
	}
	return s
}

// startPeer starts a reference server (Gunicorn, Uvicorn) for a differential test, waits
// until it answers GET /ready on addr, and stops it (SIGTERM, then SIGKILL) at the end of
// the test, logging its output if the test failed.
func startPeer(t *testing.T, name string, cmd *exec.Cmd, addr string) {
	t.Helper()
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s %s log:\n%s", name, addr, tail(logs.String(), 10000))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("%s exited at start:\n%s", name, logs.String())
		default:
		}
		if code, _, err := tryGet("http://"+addr+"/ready", 2*time.Second); err == nil && code == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer on %s within 30s:\n%s", name, addr, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rawProbe sends one raw request to addr and decodes the probe's JSON environ.
func rawProbe(t *testing.T, addr string, r diffRequest) map[string]string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: dial %s: %v", r.name, addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	raw := strings.ReplaceAll(r.raw, "{HOST}", addr)
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatalf("%s: write: %v", r.name, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s: read response from %s: %v", r.name, addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: read body from %s: %v", r.name, addr, err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s answered %d: %.500q", r.name, addr, resp.StatusCode, body)
	}
	var env map[string]string
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("%s: %s: probe answer is not JSON: %v: %.500q", r.name, addr, err, body)
	}
	// The two servers listen on different ports; make the port a placeholder.
	_, port, _ := net.SplitHostPort(addr)
	for k, v := range env {
		if k == "SERVER_PORT" && v == port {
			env[k] = "<port>"
		} else if strings.Contains(v, addr) {
			env[k] = strings.ReplaceAll(v, addr, "127.0.0.1:<port>")
		}
	}
	return env
}

func TestDifferentialGunicorn(t *testing.T) {
	gaddr := startGunicorn(t)
	c := startCaddy(t, withGlobal(`
http://127.0.0.1:{PORT} {
	wsgi probe:application {
		venv {VENV}
		chdir {REPO}/integration/testdata/gunicorn
		workers 2
	}
}
`))
	waitStatus(t, c.URL+"/ready", 200, 60*time.Second)
	caddyAddr := fmt.Sprintf("127.0.0.1:%d", c.Port)

	type row struct{ request, key, gunicorn, ours, verdict string }
	var rows []row
	var failures []string
	allowedUsed := map[string]bool{}

	for _, r := range differentialRequests {
		g := rawProbe(t, gaddr, r)
		o := rawProbe(t, caddyAddr, r)

		// The body is read identically by the app under both servers.
		if g["probe.body_len"] != o["probe.body_len"] || g["probe.body_sha256"] != o["probe.body_sha256"] {
			failures = append(failures, fmt.Sprintf("%s: body read by the app: gunicorn %s bytes, ours %s bytes (sha256 %s vs %s)",
				r.name, g["probe.body_len"], o["probe.body_len"], g["probe.body_sha256"], o["probe.body_sha256"]))
		}
		for _, k := range pep3333Required {
			if _, ok := o[k]; !ok {
				failures = append(failures, fmt.Sprintf("%s: PEP 3333 key %s missing in ours", r.name, k))
			}
		}
		for _, k := range sortedKeys(g, o) {
			gv, gok := g[k]
			ov, ook := o[k]
			if gok == ook && gv == ov {
				continue
			}
			show := func(v string, ok bool) string {
				if !ok {
					return "(absent)"
				}
				return strconv.Quote(v)
			}
			reason, allowed := diffAllowedReason(k, r.name, show(gv, gok), show(ov, ook))
			verdict := "NOT ALLOWED"
			if allowed {
				verdict = "allowed: " + reason
				allowedUsed[allowKey(k, r.name)+"|"+reason] = true
			} else if gok && !ook && pep3333Conditional(k) {
				// a PEP 3333 key (QUERY_STRING, CONTENT_*, a request header) that gunicorn sets
				// and ours lacks
				verdict = "NOT ALLOWED (PEP 3333 key missing in ours)"
				failures = append(failures, fmt.Sprintf("%s: PEP 3333 key %s set by gunicorn (%s) is missing in ours", r.name, k, show(gv, gok)))
			} else {
				failures = append(failures, fmt.Sprintf("%s: %s: gunicorn %s, ours %s", r.name, k, show(gv, gok), show(ov, ook)))
			}
			rows = append(rows, row{r.name, k, show(gv, gok), show(ov, ook), verdict})
		}
	}
	// Allowlist entries that matched nothing are stale (the module got closer to gunicorn):
	// worth pruning, not a failure.
	for _, a := range differentialAllowed {
		used := false
		for u := range allowedUsed {
			if strings.HasSuffix(u, "|"+a.reason) {
				used = true
			}
		}
		if !used {
			t.Logf("allowlist entry %s (request %q) matched no difference", a.key, a.request)
		}
	}

	// The table, ready to paste into a note (Markdown).
	cells := make([][5]string, len(rows))
	for i, r := range rows {
		cells[i] = [5]string{r.request, r.key, r.gunicorn, r.ours, r.verdict}
	}
	t.Logf("environ differences, gunicorn vs caddy-wsgi (%d requests):%s", len(differentialRequests),
		diffTable("gunicorn", "caddy-wsgi", 90, cells))

	// The same, one row per key and verdict, with one example of the values.
	type group struct {
		key, verdict, gunicorn, ours string
		requests                     []string
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, r := range rows {
		gk := r.key + "\x00" + r.verdict
		g, ok := byKey[gk]
		if !ok {
			g = &group{key: r.key, verdict: r.verdict, gunicorn: r.gunicorn, ours: r.ours}
			byKey[gk] = g
			groups = append(groups, g)
		}
		g.requests = append(g.requests, r.request)
	}
	sort.SliceStable(groups, func(i, j int) bool { return groups[i].key < groups[j].key })
	var b strings.Builder
	b.WriteString("\n| key | requests | gunicorn (example) | caddy-wsgi (example) | verdict |\n|---|---|---|---|---|\n")
	for _, g := range groups {
		reqs := strings.Join(g.requests, ", ")
		if len(g.requests) == len(differentialRequests) {
			reqs = "all"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", mdCell(g.key, 90), reqs, mdCell(g.gunicorn, 90), mdCell(g.ours, 90), mdCell(g.verdict, 90))
	}
	t.Logf("summary of the differences:%s", b.String())

	// Absolute expectations on a few values, so that agreement with gunicorn is not taken for
	// correctness when both could be wrong in the same way (and the comparison is not vacuous).
	expect := map[string]map[string]string{
		"get-query": {"PATH_INFO": `"/probe/path"`, "QUERY_STRING": `"a=1&b=%20x&c=caf%C3%A9&a=2&empty=&flag"`,
			"SCRIPT_NAME": `""`, "HTTP_USER_AGENT": `"diff-test/1.0"`, "SERVER_NAME": `"127.0.0.1"`, "SERVER_PORT": `"<port>"`},
		// PEP 3333: PATH_INFO is decoded, as latin-1 code points of the raw bytes (%2F too)
		"encoded-path":     {"PATH_INFO": strconv.Quote("/caf\u00c3\u00a9/a/b/~user/sp ace/%zz/plus+sign"), "probe.path_info_utf8": strconv.Quote("/café/a/b/~user/sp ace/%zz/plus+sign"), "QUERY_STRING": `"q=%2F&x=caf%C3%A9"`},
		"repeated-headers": {"HTTP_X_MULTI": `"first,second"`, "HTTP_ACCEPT": `"text/html,application/json"`, "HTTP_X_CUSTOM_HEADER": `"MiXeD Case value"`},
		// a header name with "_" would alias the dashed one (X_Forwarded_For -> HTTP_X_FORWARDED_FOR): dropped
		"underscore-header": {"HTTP_X_FORWARDED_FOR": "(absent)", "HTTP_X_UNDERSCORE": "(absent)", "HTTP_X_DASH_HEADER": `"dash"`},
		"post-form":         {"CONTENT_LENGTH": `"27"`, "probe.body_len": `"27"`, "CONTENT_TYPE": `"application/x-www-form-urlencoded; charset=utf-8"`},
		"post-chunked":      {"probe.body_len": `"13"`, "REQUEST_METHOD": `"POST"`},
		"obs-text-header":   {"HTTP_X_LATIN": strconv.Quote("caf\u00e9 \u00c3\u00a9")},
		"http10":            {"SERVER_PROTOCOL": `"HTTP/1.0"`},
	}
	for _, r := range differentialRequests {
		want, ok := expect[r.name]
		if !ok {
			continue
		}
		o := rawProbe(t, caddyAddr, r)
		for k, w := range want {
			v, ok := o[k]
			got := "(absent)"
			if ok {
				got = strconv.Quote(v)
			}
			if got != w {
				failures = append(failures, fmt.Sprintf("%s: ours %s = %s, want %s", r.name, k, got, w))
			}
		}
	}
	for _, f := range failures {
		t.Error(f)
	}
}
