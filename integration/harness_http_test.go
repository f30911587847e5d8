//go:build linux

package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Harness: requests the tests send (raw sockets, concurrent gets, the probe app) and the Caddyfile blocks they serve.

// rawExchange sends req on a new connection (halfClose: then shuts the write side, as a
// client whose upload was cut) and returns the status and body of the answer.
func rawExchange(t *testing.T, port int, req string, halfClose bool) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	if halfClose {
		conn.(*net.TCPConn).CloseWrite()
	}
	method, _, _ := strings.Cut(req, " ")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		return 0, "no response: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(b)
}

// wsgiSite returns a Caddyfile (with the global block) serving app at site with the given
// extra subdirective lines. python is {PYTHON}, chdir {APPS}, MARKER_DIR {TMP}.
func wsgiSite(site, app string, opts ...string) string {
	var b strings.Builder
	b.WriteString(globalBlock())
	fmt.Fprintf(&b, "%s {\n\twsgi %s {\n\t\tpython {PYTHON}\n\t\tchdir {APPS}\n\t\tenv MARKER_DIR {TMP}\n", site, app)
	for _, o := range opts {
		b.WriteString("\t\t" + o + "\n")
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

type probeDoc struct {
	Env           map[string]string `json:"env"`
	Types         map[string]string `json:"types"`
	EnvironIsDict bool              `json:"environ_is_dict"`
	WSGI          probeWSGI         `json:"wsgi"`
	BodyLen       int               `json:"body_len"`
	BodySHA256    string            `json:"body_sha256"`
	BodyHead      string            `json:"body_head"`
	ReadAfterEOF  string            `json:"read_after_eof"`
	Pid           int               `json:"pid"`
	Ppid          int               `json:"ppid"`
	Python        string            `json:"python"`
	Prefix        string            `json:"prefix"`
	Executable    string            `json:"executable"`
	Cwd           string            `json:"cwd"`
	SysPath       []string          `json:"sys_path"`
	OSEnv         map[string]string `json:"osenv"`
	raw           []byte
}

type probeWSGI struct {
	Version         []int  `json:"version"`
	URLScheme       string `json:"url_scheme"`
	Multithread     bool   `json:"multithread"`
	Multiprocess    bool   `json:"multiprocess"`
	RunOnce         bool   `json:"run_once"`
	InputTerminated *bool  `json:"input_terminated"`
	HasFileWrapper  bool   `json:"has_file_wrapper"`
}

func parseProbe(t *testing.T, resp *http.Response, body []byte) *probeDoc {
	t.Helper()
	if resp.StatusCode != 200 {
		t.Fatalf("probe answered %d (a wsgiref.validate assertion fails with 500): %.2000s", resp.StatusCode, body)
	}
	var d probeDoc
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("probe body is not JSON: %v: %.500s", err, body)
	}
	d.raw = body
	return &d
}

func getProbe(t *testing.T, url string) *probeDoc {
	t.Helper()
	resp, body := get(t, url)
	return parseProbe(t, resp, body)
}

// rawConn is a plain TCP connection for byte-exact HTTP/1.1 requests.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, c *Caddy) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.Port), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawConn{Conn: conn, br: bufio.NewReader(conn)}
}

// roundTrip writes raw (CRLF line endings expected in raw) and reads one response for
// method. The body is read fully; err reports a body read error (aborted response).
func (rc *rawConn) roundTrip(t *testing.T, method, raw string) (*http.Response, []byte, error) {
	t.Helper()
	rc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(rc, raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response to %q: %v", firstLine(raw), err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body, err
}

// rawHeaderBlock reads the raw status line + headers (up to the blank line) of one response.
func (rc *rawConn) rawHeaderBlock(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for {
		line, err := rc.br.ReadString('\n')
		b.WriteString(line)
		if err != nil || line == "\r\n" || line == "\n" {
			return b.String()
		}
	}
}

// waitFile polls for path and returns its content.
func waitFile(path string, timeout time.Duration) (string, bool) {
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(path); err == nil {
			return string(b), true
		}
		if time.Now().After(deadline) {
			return "", false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// token returns a unique id for markers and log lines.
func token(prefix string) string {
	tokSeq.Lock()
	defer tokSeq.Unlock()
	tokSeq.n++
	return fmt.Sprintf("%s%d%d", prefix, time.Now().UnixNano()%1000000, tokSeq.n)
}

func chunked(body []byte, chunk int) string {
	var b strings.Builder
	for len(body) > 0 {
		n := chunk
		if n > len(body) {
			n = len(body)
		}
		fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
		body = body[n:]
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

type asyncResult struct {
	code    int
	body    []byte
	err     error
	elapsed time.Duration
	header  http.Header
}

// goGet runs a GET in the background.
func goGet(url string, timeout time.Duration) <-chan asyncResult {
	ch := make(chan asyncResult, 1)
	go func() {
		st := time.Now()
		cl := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := cl.Get(url)
		if err != nil {
			ch <- asyncResult{err: err, elapsed: time.Since(st)}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- asyncResult{code: resp.StatusCode, body: b, err: err, elapsed: time.Since(st), header: resp.Header}
	}()
	return ch
}

func awaitResult(t *testing.T, ch <-chan asyncResult, timeout time.Duration, what string) asyncResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(timeout):
		t.Fatalf("%s: no answer within %v", what, timeout)
		return asyncResult{}
	}
}

func readPidMarker(t *testing.T, c *Caddy, id string) int {
	t.Helper()
	s, ok := waitFile(filepath.Join(c.Dir, "inflight-"+id), 10*time.Second)
	if !ok {
		t.Fatalf("request %s never reached the app", id)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("bad pid marker %q", s)
	}
	return pid
}

func pidOf(t *testing.T, body []byte) int {
	t.Helper()
	var d struct{ Pid int }
	if err := json.Unmarshal(body, &d); err != nil || d.Pid == 0 {
		t.Fatalf("no pid in %q", body)
	}
	return d.Pid
}

func contains(ps []int, p int) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

// waitReplaced waits until caddy has n live children, none of them dead.
func waitReplaced(t *testing.T, c *Caddy, n int, dead int) []int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ps := c.WorkerPids()
		if len(ps) >= n && !contains(ps, dead) {
			return ps
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %d not replaced: caddy's children are %v (want %d live ones)", dead, ps, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func checkLaterRequestsSucceed(t *testing.T, c *Caddy, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		code, body, err := tryGet(c.URL+"/pid", 15*time.Second)
		if err != nil || code != 200 {
			t.Errorf("request %d after the crash: %d %v %.200s", i, code, err, body)
		}
	}
}
