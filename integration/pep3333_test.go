//go:build linux

package integration

// PEP 3333 conformance through Caddy: environ, wsgi.input, start_response, response framing,
// streaming, close(), wsgi.file_wrapper, logging, HTTP/2.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------------------------
// helpers shared by the core tests

const localSite = "http://127.0.0.1:{PORT}"

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// pattern mirrors behave.pattern(): concatenated sha256(str(i)) digests.
func pattern(size int) []byte {
	out := make([]byte, 0, size+32)
	for i := 0; len(out) < size; i++ {
		s := sha256.Sum256([]byte(strconv.Itoa(i)))
		out = append(out, s[:]...)
	}
	return out[:size]
}

func firstLine(s string) string {
	if i := strings.Index(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

var tokSeq struct {
	sync.Mutex
	n int
}

// ---------------------------------------------------------------------------------------------
// environ

func TestEnvironHTTP1(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite("http://:{PORT}", "probe", "workers 2", "threads 1"))

	rc := dialRaw(t, c)
	localPort := rc.LocalAddr().(*net.TCPAddr).Port
	req := "POST /a%2Fb/caf%C3%A9?x=1&y=%20 HTTP/1.1\r\n" +
		"Host: example.com:8080\r\n" +
		"X-Foo: a\r\n" +
		"X-Foo: b\r\n" +
		"X_Bar: spoofed-underscore\r\n" +
		"X-Bar: legit\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"X-Latin: caf\xc3\xa9\r\n" +
		"Content-Length: 5\r\n" +
		"\r\n" +
		"hello"
	resp, body, err := rc.roundTrip(t, "POST", req)
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	d := parseProbe(t, resp, body)
	e := d.Env

	if !d.EnvironIsDict {
		t.Errorf("environ is not a builtin dict")
	}
	want := map[string]string{
		"REQUEST_METHOD":  "POST",
		"PATH_INFO":       "/a/b/caf\u00c3\u00a9", // latin-1 decoding of the UTF-8 bytes
		"RAW_URI":         "/a%2Fb/caf%C3%A9?x=1&y=%20",
		"QUERY_STRING":    "x=1&y=%20",
		"SERVER_PROTOCOL": "HTTP/1.1",
		"HTTP_HOST":       "example.com:8080",
		"HTTP_X_FOO":      "a,b",
		"HTTP_X_BAR":      "legit",
		"CONTENT_TYPE":    "text/plain; charset=utf-8",
		"CONTENT_LENGTH":  "5",
		"REMOTE_ADDR":     "127.0.0.1",
		"REMOTE_PORT":     strconv.Itoa(localPort),
		"HTTP_X_LATIN":    "caf\u00c3\u00a9", // header bytes as latin-1
	}
	for k, v := range want {
		got, ok := e[k]
		if !ok {
			t.Errorf("environ[%s] missing, want %q", k, v)
		} else if got != v {
			t.Errorf("environ[%s] = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
		"SERVER_PROTOCOL", "REMOTE_ADDR", "wsgi.version", "wsgi.url_scheme", "wsgi.input", "wsgi.errors",
		"wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "wsgi.input_terminated", "wsgi.file_wrapper"} {
		if _, ok := d.Types[k]; !ok {
			t.Errorf("required environ key %s missing", k)
		}
	}
	for _, k := range []string{"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_X_BAR_", "HTTP_X__BAR"} {
		if v, ok := e[k]; ok {
			t.Errorf("environ has %s=%q, it must not", k, v)
		}
	}
	for k, v := range e {
		if strings.Contains(v, "spoofed-underscore") {
			t.Errorf("header with an underscore in its name leaked into environ as %s=%q", k, v)
		}
	}
	if sn, ok := e["SCRIPT_NAME"]; ok && sn != "" {
		t.Errorf("SCRIPT_NAME = %q, want empty", sn)
	}
	if e["SERVER_NAME"] == "" {
		t.Errorf("SERVER_NAME empty or missing")
	}
	if p, err := strconv.Atoi(e["SERVER_PORT"]); err != nil || p <= 0 {
		t.Errorf("SERVER_PORT = %q, want a port number", e["SERVER_PORT"])
	} else if p != 8080 && p != c.Port {
		t.Errorf("SERVER_PORT = %d, want 8080 (Host) or %d (listener)", p, c.Port)
	}
	if sn := e["SERVER_NAME"]; sn != "example.com" && sn != "127.0.0.1" {
		t.Errorf("SERVER_NAME = %q, want example.com (Host) or 127.0.0.1 (listener)", sn)
	}
	if d.BodyLen != 5 || d.BodyHead != "hello" {
		t.Errorf("body = %d %q, want 5 \"hello\"", d.BodyLen, d.BodyHead)
	}
	if d.ReadAfterEOF != "" {
		t.Errorf("wsgi.input.read(1) after the body = %q, want b''", d.ReadAfterEOF)
	}
	w := d.WSGI
	if len(w.Version) != 2 || w.Version[0] != 1 || w.Version[1] != 0 {
		t.Errorf("wsgi.version = %v, want (1, 0)", w.Version)
	}
	if w.URLScheme != "http" {
		t.Errorf("wsgi.url_scheme = %q, want http", w.URLScheme)
	}
	if w.InputTerminated == nil || !*w.InputTerminated {
		t.Errorf("wsgi.input_terminated = %v, want True", w.InputTerminated)
	}
	if w.RunOnce {
		t.Errorf("wsgi.run_once = True, want False")
	}
	if !w.Multiprocess {
		t.Errorf("wsgi.multiprocess = False with workers 2")
	}
	if w.Multithread {
		t.Errorf("wsgi.multithread = True with threads 1")
	}
	if !w.HasFileWrapper {
		t.Errorf("wsgi.file_wrapper missing")
	}
	for _, k := range []string{"wsgi.input", "wsgi.errors"} {
		if _, ok := d.Types[k]; !ok {
			t.Errorf("environ has no %s", k)
		}
	}

	// A GET without a query: QUERY_STRING present and empty, PATH_INFO "/".
	resp, body, err = rc.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	d = parseProbe(t, resp, body)
	if v, ok := d.Env["QUERY_STRING"]; !ok || v != "" {
		t.Errorf("QUERY_STRING for GET / = %q (present %v), want present and empty", v, ok)
	}
	if d.Env["PATH_INFO"] != "/" {
		t.Errorf("PATH_INFO for GET / = %q, want /", d.Env["PATH_INFO"])
	}
	if d.Env["REQUEST_METHOD"] != "GET" {
		t.Errorf("REQUEST_METHOD = %q", d.Env["REQUEST_METHOD"])
	}
	if _, ok := d.Env["CONTENT_LENGTH"]; ok && d.Env["CONTENT_LENGTH"] != "" && d.Env["CONTENT_LENGTH"] != "0" {
		t.Errorf("CONTENT_LENGTH for a GET without body = %q", d.Env["CONTENT_LENGTH"])
	}
	if d.BodyLen != 0 {
		t.Errorf("GET body length %d, want 0", d.BodyLen)
	}

	// A path that decodes to NUL is refused before any worker sees it.
	rc2 := dialRaw(t, c)
	resp, body, _ = rc2.roundTrip(t, "GET", "GET /a%00b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	if resp.StatusCode != 400 {
		t.Errorf("GET /a%%00b: %d %.200q, want 400", resp.StatusCode, body)
	}

	// Every validated response was closed (wsgiref.validate complains on stderr otherwise).
	time.Sleep(200 * time.Millisecond)
	if strings.Contains(c.Logs(), "without being closed") {
		t.Errorf("wsgiref.validate reports an iterator that was never closed")
	}
}

func TestEnvironMultithreadMultiprocess(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		opts        []string
		mt, mp      bool
		wantWorkers int
	}{
		{"workers1_threads4", []string{"workers 1", "threads 4"}, true, false, 1},
		{"workers2_threads1", []string{"workers 2", "threads 1"}, false, true, 2},
		{"defaults", nil, false, runtime.NumCPU() > 1, runtime.NumCPU()},
	}
	for _, tc := range cases {
		tc := tc
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := startCaddy(t, wsgiSite(localSite, "probe", tc.opts...))
			d := getProbe(t, c.URL+"/")
			if d.WSGI.Multithread != tc.mt {
				t.Errorf("wsgi.multithread = %v, want %v", d.WSGI.Multithread, tc.mt)
			}
			if d.WSGI.Multiprocess != tc.mp {
				t.Errorf("wsgi.multiprocess = %v, want %v", d.WSGI.Multiprocess, tc.mp)
			}
			pids := c.waitWorkers(t, tc.wantWorkers, 10*time.Second)
			found := false
			for _, p := range pids {
				if p == d.Pid {
					found = true
				}
			}
			if !found {
				t.Errorf("the worker pid %d is not a child of caddy (children %v)", d.Pid, pids)
			}
			if d.Ppid != c.Pid() {
				t.Errorf("worker's parent is %d, want caddy %d", d.Ppid, c.Pid())
			}
		})
	}
}

func TestScriptName(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	handle_path /app/* {
		wsgi probe {
			python {PYTHON}
			chdir {APPS}
			workers 1
		}
	}
	handle /mount/* {
		wsgi probe {
			python {PYTHON}
			chdir {APPS}
			workers 1
			script_name /mount
		}
	}
}
`)
	d := getProbe(t, c.URL+"/app/x/y%2Fz?q=1")
	if d.Env["SCRIPT_NAME"] != "/app" {
		t.Errorf("handle_path /app/*: SCRIPT_NAME = %q, want /app", d.Env["SCRIPT_NAME"])
	}
	if d.Env["PATH_INFO"] != "/x/y/z" {
		t.Errorf("handle_path /app/*: PATH_INFO = %q, want /x/y/z", d.Env["PATH_INFO"])
	}
	if d.Env["QUERY_STRING"] != "q=1" {
		t.Errorf("QUERY_STRING = %q", d.Env["QUERY_STRING"])
	}
	if d.Env["RAW_URI"] != "/app/x/y%2Fz?q=1" {
		t.Errorf("RAW_URI = %q, want the original request target /app/x/y%%2Fz?q=1", d.Env["RAW_URI"])
	}

	d = getProbe(t, c.URL+"/mount/foo/bar")
	if d.Env["SCRIPT_NAME"] != "/mount" {
		t.Errorf("script_name /mount: SCRIPT_NAME = %q", d.Env["SCRIPT_NAME"])
	}
	if got := d.Env["SCRIPT_NAME"] + d.Env["PATH_INFO"]; got != "/mount/foo/bar" {
		t.Errorf("script_name /mount: SCRIPT_NAME+PATH_INFO = %q, want /mount/foo/bar (PATH_INFO %q)", got, d.Env["PATH_INFO"])
	}
}

// ---------------------------------------------------------------------------------------------
// request bodies

func TestRequestBodies(t *testing.T) {
	t.Parallel()
	// default buffer_body (1MiB) on /, a 1 KiB buffer_body under /small/
	c := startCaddy(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	handle_path /small/* {
		wsgi probe {
			python {PYTHON}
			chdir {APPS}
			workers 1
			buffer_body 1024
		}
	}
	handle {
		wsgi probe {
			python {PYTHON}
			chdir {APPS}
			workers 1
		}
	}
}
`)
	small := randomBytes(t, 50000)
	big := randomBytes(t, 300*1024+7)

	t.Run("chunked_within_buffer_gets_CONTENT_LENGTH", func(t *testing.T) {
		rc := dialRaw(t, c)
		resp, body, err := rc.roundTrip(t, "POST", "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked(small, 7000))
		if err != nil {
			t.Fatal(err)
		}
		d := parseProbe(t, resp, body)
		if d.Env["CONTENT_LENGTH"] != strconv.Itoa(len(small)) {
			t.Errorf("CONTENT_LENGTH = %q, want %d (a chunked body within buffer_body is buffered)", d.Env["CONTENT_LENGTH"], len(small))
		}
		if d.BodyLen != len(small) || d.BodySHA256 != sha256hex(small) {
			t.Errorf("body: got %d bytes sha %s, want %d sha %s", d.BodyLen, d.BodySHA256, len(small), sha256hex(small))
		}
		if _, ok := d.Env["HTTP_CONTENT_LENGTH"]; ok {
			t.Errorf("HTTP_CONTENT_LENGTH present")
		}
	})
	t.Run("buffered_with_length", func(t *testing.T) {
		resp, body := post(t, c.URL+"/upload", "application/octet-stream", big)
		d := parseProbe(t, resp, body)
		if d.Env["CONTENT_LENGTH"] != strconv.Itoa(len(big)) || d.BodySHA256 != sha256hex(big) {
			t.Errorf("CONTENT_LENGTH %q body %d sha %s, want %d sha %s", d.Env["CONTENT_LENGTH"], d.BodyLen, d.BodySHA256, len(big), sha256hex(big))
		}
	})
	t.Run("streamed_with_length", func(t *testing.T) {
		resp, body := post(t, c.URL+"/small/upload", "application/octet-stream", big)
		d := parseProbe(t, resp, body)
		if d.Env["CONTENT_LENGTH"] != strconv.Itoa(len(big)) {
			t.Errorf("CONTENT_LENGTH = %q, want %d", d.Env["CONTENT_LENGTH"], len(big))
		}
		if d.BodyLen != len(big) || d.BodySHA256 != sha256hex(big) {
			t.Errorf("streamed body: got %d bytes sha %s, want %d sha %s", d.BodyLen, d.BodySHA256, len(big), sha256hex(big))
		}
		if d.ReadAfterEOF != "" {
			t.Errorf("read(1) after a streamed body = %q", d.ReadAfterEOF)
		}
	})
	t.Run("streamed_chunked", func(t *testing.T) {
		rc := dialRaw(t, c)
		resp, body, err := rc.roundTrip(t, "POST", "POST /small/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked(big, 10000))
		if err != nil {
			t.Fatal(err)
		}
		d := parseProbe(t, resp, body)
		if d.BodyLen != len(big) || d.BodySHA256 != sha256hex(big) {
			t.Errorf("streamed chunked body: got %d bytes sha %s, want %d sha %s", d.BodyLen, d.BodySHA256, len(big), sha256hex(big))
		}
		if d.WSGI.InputTerminated == nil || !*d.WSGI.InputTerminated {
			t.Errorf("wsgi.input_terminated not True")
		}
	})
	t.Run("expect_100_continue", func(t *testing.T) {
		rc := dialRaw(t, c)
		rc.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(rc, "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
		line, err := rc.br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
			t.Fatalf("want 100 Continue before the body is sent, got %q %v", line, err)
		}
		rc.rawHeaderBlock(t) // rest of the 100 response
		io.WriteString(rc, "hello")
		resp, err := http.ReadResponse(rc.br, &http.Request{Method: "POST"})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		d := parseProbe(t, resp, body)
		if d.BodyHead != "hello" {
			t.Errorf("body after 100-continue = %q", d.BodyHead)
		}
	})
}

// inputOp is one operation on wsgi.input, simulated in Go to compute the expected result.
func simulateInput(body []byte, ops []string) []map[string]any {
	pos := 0
	rest := func() []byte { return body[pos:] }
	readline := func(limit int) []byte {
		r := rest()
		n := bytes.IndexByte(r, '\n')
		if n < 0 {
			n = len(r)
		} else {
			n++
		}
		if limit >= 0 && limit < n {
			n = limit
		}
		pos += n
		return r[:n]
	}
	var out []map[string]any
	for _, op := range ops {
		name, arg, hasArg := strings.Cut(op, ":")
		n := -1
		if hasArg {
			n, _ = strconv.Atoi(arg)
		}
		var items [][]byte
		switch name {
		case "read":
			r := rest()
			if n >= 0 && n < len(r) {
				r = r[:n]
			}
			pos += len(r)
			items = [][]byte{r}
		case "readline":
			items = [][]byte{readline(n)}
		case "readlines", "iter":
			for pos < len(body) {
				items = append(items, readline(-1))
			}
		}
		lens := []int{}
		var joined []byte
		for _, it := range items {
			lens = append(lens, len(it))
			joined = append(joined, it...)
		}
		h := joined
		if len(h) > 64 {
			h = h[:64]
		}
		out = append(out, map[string]any{"op": op, "lens": lens, "sha256": sha256hex(joined), "hex": hex.EncodeToString(h)})
	}
	return out
}

func TestInputMethods(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	handle_path /streamed/* {
		wsgi behave {
			python {PYTHON}
			chdir {APPS}
			workers 1
			buffer_body 64
		}
	}
	handle {
		wsgi behave {
			python {PYTHON}
			chdir {APPS}
			workers 1
		}
	}
}
`)
	smallBody := []byte("line1\nline2 is a longer line\n\nline4\r\nlast-without-newline")
	var lb bytes.Buffer
	for i := 0; lb.Len() < 200*1024; i++ {
		lb.WriteString(strings.Repeat(string(rune('a'+i%26)), (i*37)%3000))
		lb.WriteString("\n")
	}
	lb.WriteString("tail-without-newline")
	largeBody := lb.Bytes()

	seqs := [][]string{
		{"read:7", "readline", "readline:4", "readline", "readline:0", "read:0", "read:1000000", "readline", "read", "read:5"},
		{"readline", "readlines", "read:10", "readline"},
		{"read:3", "iter", "read", "readline"},
		{"read", "read:10", "read"},
		{"read:-1", "readline"},
		{"readline:10", "readline:10", "readline:10", "readline:100000", "read:65537", "readline", "iter"},
	}
	for _, mode := range []string{"buffered", "streamed"} {
		for bi, body := range [][]byte{smallBody, largeBody} {
			for si, seq := range seqs {
				mode, body, seq := mode, body, seq
				name := fmt.Sprintf("%s/body%d/seq%d", mode, bi, si)
				t.Run(name, func(t *testing.T) {
					prefix := ""
					if mode == "streamed" {
						prefix = "/streamed"
					}
					url := c.URL + prefix + "/input?ops=" + strings.Join(seq, ",")
					var resp *http.Response
					var rb []byte
					if bi == 0 && mode == "streamed" {
						// also exercise a chunked streamed upload
						rc := dialRaw(t, c)
						var err error
						resp, rb, err = rc.roundTrip(t, "POST", "POST "+prefix+"/input?ops="+strings.Join(seq, ",")+" HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked(body, 5))
						if err != nil {
							t.Fatal(err)
						}
					} else {
						resp, rb = post(t, url, "application/octet-stream", body)
					}
					if resp.StatusCode != 200 {
						t.Fatalf("status %d: %.3000s", resp.StatusCode, rb)
					}
					var got struct {
						Results []map[string]any `json:"results"`
					}
					if err := json.Unmarshal(rb, &got); err != nil {
						t.Fatalf("%v: %.500s", err, rb)
					}
					want := simulateInput(body, seq)
					wj, _ := json.Marshal(want)
					var wantNorm []map[string]any
					json.Unmarshal(wj, &wantNorm)
					if len(got.Results) != len(wantNorm) {
						t.Fatalf("got %d results, want %d", len(got.Results), len(wantNorm))
					}
					for i := range wantNorm {
						g, _ := json.Marshal(got.Results[i])
						w, _ := json.Marshal(wantNorm[i])
						if !bytes.Equal(g, w) {
							t.Errorf("op %d %s:\n got %.600s\nwant %.600s", i, seq[i], g, w)
						}
					}
				})
			}
		}
	}
}

// ---------------------------------------------------------------------------------------------
// responses

func TestResponses(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "behave", "workers 2"))

	t.Run("write_callable", func(t *testing.T) {
		resp, body := get(t, c.URL+"/write")
		if resp.StatusCode != 200 || string(body) != "ABCD" {
			t.Errorf("got %d %q, want 200 \"ABCD\" (write() data first, then the iterable)", resp.StatusCode, body)
		}
	})
	t.Run("exc_info_replaces_headers", func(t *testing.T) {
		resp, body := get(t, c.URL+"/exc-info")
		if resp.StatusCode != 500 {
			t.Errorf("status %d, want 500 (exc_info before headers were sent replaces the status)", resp.StatusCode)
		}
		if resp.Header.Get("X-First") != "" {
			t.Errorf("X-First from the first start_response survived exc_info replacement")
		}
		if resp.Header.Get("X-Second") != "1" {
			t.Errorf("X-Second missing")
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/plain" {
			t.Errorf("Content-Type = %q, want text/plain (replaced, not appended)", ct)
		}
		if string(body) != "oops-body" {
			t.Errorf("body %q", body)
		}
	})
	t.Run("str_body_is_500", func(t *testing.T) {
		resp, body := get(t, c.URL+"/str-body")
		if resp.StatusCode != 500 {
			t.Errorf("status %d, want 500 for a str body", resp.StatusCode)
		}
		if strings.Contains(string(body), "this is a str") {
			t.Errorf("the str body was sent: %q", body)
		}
	})
	t.Run("content_length_honoured", func(t *testing.T) {
		resp, body := get(t, c.URL+"/content-length")
		if resp.ContentLength != 11 || len(resp.TransferEncoding) != 0 {
			t.Errorf("ContentLength %d TransferEncoding %v, want 11 and none", resp.ContentLength, resp.TransferEncoding)
		}
		if string(body) != "hello world" {
			t.Errorf("body %q", body)
		}
	})
	t.Run("second_start_response_without_exc_info_is_500", func(t *testing.T) {
		resp, body := get(t, c.URL+"/double-start")
		if resp.StatusCode != 500 || resp.Header.Get("X-Second-Call") != "" {
			t.Errorf("got %d X-Second-Call=%q %q, want 500 (start_response called twice without exc_info)", resp.StatusCode, resp.Header.Get("X-Second-Call"), body)
		}
	})
	t.Run("http10_close_delimited", func(t *testing.T) {
		rc := dialRaw(t, c)
		rc.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(rc, "GET /stream?n=20&size=1000 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
		resp, err := http.ReadResponse(rc.br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || len(body) != 20000 || resp.StatusCode != 200 {
			t.Errorf("HTTP/1.0 streamed response: %d, %d bytes, %v", resp.StatusCode, len(body), err)
		}
		if len(resp.TransferEncoding) != 0 {
			t.Errorf("chunked encoding sent to an HTTP/1.0 client")
		}
	})
	for _, kind := range []string{"list", "gen"} {
		kind := kind
		t.Run("empty_body/"+kind, func(t *testing.T) {
			resp, body := get(t, c.URL+"/empty?kind="+kind)
			if resp.StatusCode != 200 || resp.Header.Get("X-Empty") != kind || len(body) != 0 {
				t.Errorf("got %d X-Empty=%q body %q, want 200 with the headers and no body", resp.StatusCode, resp.Header.Get("X-Empty"), body)
			}
		})
	}
	t.Run("lazy_start_response", func(t *testing.T) {
		resp, body := get(t, c.URL+"/lazy-start")
		if resp.StatusCode != 200 || resp.Header.Get("X-Lazy") != "1" || string(body) != "lazy-body" {
			t.Errorf("got %d X-Lazy=%q %q", resp.StatusCode, resp.Header.Get("X-Lazy"), body)
		}
	})
	t.Run("headers_held_until_first_nonempty_block", func(t *testing.T) {
		resp, body := get(t, c.URL+"/empty-then-raise")
		if resp.StatusCode != 500 {
			t.Errorf("status %d, want 500: the app raised after an empty block, before any body byte", resp.StatusCode)
		}
		if resp.Header.Get("X-Should-Not-Appear") != "" {
			t.Errorf("headers of the failed response were sent")
		}
		_ = body
		if m := waitLogLine(c, 5*time.Second, func(l string) bool { return strings.Contains(l, "boom-before-first-block") }); len(m) == 0 {
			t.Errorf("the exception is not in caddy's log")
		}
	})
	for _, withCL := range []bool{false, true} {
		withCL := withCL
		t.Run(fmt.Sprintf("error_after_headers_aborts/cl=%v", withCL), func(t *testing.T) {
			id := token("eah")
			url := c.URL + "/error-after-headers?id=" + id
			if withCL {
				url += "&cl=100"
			}
			resp, err := testClient.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("status %d, want 200 (headers were already sent)", resp.StatusCode)
			}
			if err == nil {
				t.Errorf("the response ended cleanly with body %q; an exception after the headers must abort it", body)
			}
			if !strings.HasPrefix(string(body), "partial-block") {
				t.Errorf("first block %q not received", body)
			}
			if m := waitLogLine(c, 5*time.Second, func(l string) bool { return strings.Contains(l, "boom-after-headers-"+id) }); len(m) == 0 {
				t.Errorf("the traceback is not in caddy's log")
			}
		})
	}
	t.Run("no_body_for_HEAD_204_304", func(t *testing.T) {
		rc := dialRaw(t, c)
		for _, tc := range []struct{ method, path string }{
			{"HEAD", "/status?status=200"},
			{"GET", "/status?status=204"},
			{"GET", "/status?status=304"},
			{"HEAD", "/content-length"},
		} {
			resp, body, err := rc.roundTrip(t, tc.method, tc.method+" "+tc.path+" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
			if err != nil {
				t.Errorf("%s %s: %v", tc.method, tc.path, err)
			}
			if len(body) != 0 {
				t.Errorf("%s %s: body %q", tc.method, tc.path, body)
			}
			if tc.path == "/content-length" && resp.ContentLength != 11 {
				t.Errorf("HEAD /content-length: Content-Length %d, want the app's 11", resp.ContentLength)
			}
			// The next response on the same connection must parse: no stray body bytes.
			resp2, body2, err := rc.roundTrip(t, "GET", "GET /write HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
			if err != nil || resp2.StatusCode != 200 || string(body2) != "ABCD" {
				t.Errorf("after %s %s the next response on the connection is %d %q %v (body bytes leaked?)", tc.method, tc.path, resp2.StatusCode, body2, err)
			}
		}
	})
	for _, kind := range []string{"value-crlf", "value-lf", "value-cr", "name-crlf", "value-nul", "status-crlf"} {
		kind := kind
		t.Run("bad_header/"+kind, func(t *testing.T) {
			id := token("bh")
			rc := dialRaw(t, c)
			rc.SetDeadline(time.Now().Add(20 * time.Second))
			io.WriteString(rc, "GET /bad-header?kind="+kind+"&id="+id+" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
			raw, _ := io.ReadAll(rc)
			if !strings.HasPrefix(string(raw), "HTTP/1.1 500") {
				t.Errorf("response %.300q, want 500", raw)
			}
			if bytes.Contains(bytes.ToLower(raw), []byte("x-injected")) {
				t.Errorf("response contains the injected header: %q", raw)
			}
			if bytes.Contains(raw, []byte("should-not-be-sent")) {
				t.Errorf("the app's body was sent: %q", raw)
			}
			if m := waitLogLine(c, 5*time.Second, func(l string) bool {
				return strings.Contains(l, id) && isLevel(l, "error", "warn")
			}); len(m) == 0 {
				t.Errorf("no error/warn log line mentions the request (id %s)", id)
			}
		})
	}
	t.Run("hop_by_hop_dropped", func(t *testing.T) {
		rc := dialRaw(t, c)
		rc.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(rc, "GET /hop HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		hdr := rc.rawHeaderBlock(t)
		if !strings.HasPrefix(hdr, "HTTP/1.1 200") {
			t.Fatalf("response %q", hdr)
		}
		lower := strings.ToLower(hdr)
		for _, h := range []string{"keep-alive:", "transfer-encoding:", "upgrade:", "proxy-authenticate:", "\nte:"} {
			if strings.Contains(lower, h) {
				t.Errorf("hop-by-hop header %q was forwarded:\n%s", h, hdr)
			}
		}
		if strings.Contains(lower, "connection: keep-alive") {
			t.Errorf("the app's Connection header was forwarded:\n%s", hdr)
		}
		if !strings.Contains(lower, "x-ok: yes") {
			t.Errorf("ordinary header X-Ok missing:\n%s", hdr)
		}
		if !strings.Contains(lower, "content-length: 8") {
			t.Errorf("Content-Length 8 missing:\n%s", hdr)
		}
		body := make([]byte, 8)
		if _, err := io.ReadFull(rc.br, body); err != nil || string(body) != "hop-body" {
			t.Errorf("body %q %v", body, err)
		}
		if m := waitLogLine(c, 5*time.Second, func(l string) bool {
			ll := strings.ToLower(l)
			return isLevel(l, "warn") && (strings.Contains(ll, "hop") || strings.Contains(ll, "keep-alive") || strings.Contains(ll, "upgrade"))
		}); len(m) == 0 {
			t.Errorf("no warning about the dropped hop-by-hop headers in caddy's log")
		}
	})
}

// ---------------------------------------------------------------------------------------------
// streaming

func TestStreamingIsUnbuffered(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "behave", "workers 1"))
	name := token("go")
	type result struct {
		resp *http.Response
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		resp, err := testClient.Get(c.URL + "/wait-file?name=" + name)
		ch <- result{resp, err}
	}()
	var resp *http.Response
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		resp = r.resp
	case <-time.After(8 * time.Second):
		os.WriteFile(filepath.Join(c.Dir, name), nil, 0o644) // unblock the app
		t.Fatalf("no response headers within 8 s although the app yielded its first block")
	}
	defer resp.Body.Close()
	first := make([]byte, len("first-block\n"))
	done := make(chan error, 1)
	go func() { _, err := io.ReadFull(resp.Body, first); done <- err }()
	select {
	case err := <-done:
		if err != nil || string(first) != "first-block\n" {
			t.Fatalf("first block %q %v", first, err)
		}
	case <-time.After(8 * time.Second):
		os.WriteFile(filepath.Join(c.Dir, name), nil, 0o644)
		t.Fatalf("the first block did not reach the client before the app produced the next one (buffered)")
	}
	if err := os.WriteFile(filepath.Join(c.Dir, name), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second-block\n" {
		t.Errorf("rest %q %v, want \"second-block\\n\"", rest, err)
	}
}

func TestLargeStreamBoundedMemory(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "behave", "workers 1"))
	// warm up, learn the worker pid
	resp, body := get(t, c.URL+"/pid")
	var pd struct{ Pid int }
	json.Unmarshal(body, &pd)
	if resp.StatusCode != 200 || pd.Pid == 0 {
		t.Fatalf("/pid: %d %s", resp.StatusCode, body)
	}
	baseCaddy, baseWorker := vmRSS(c.Pid()), vmRSS(pd.Pid)
	if baseCaddy <= 0 || baseWorker <= 0 {
		t.Fatalf("cannot read VmRSS (caddy %d, worker %d)", baseCaddy, baseWorker)
	}

	const blocks, size = 16384, 65536 // 1 GiB
	var maxCaddy, maxWorker int
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				if v := vmRSS(c.Pid()); v > maxCaddy {
					maxCaddy = v
				}
				if v := vmRSS(pd.Pid); v > maxWorker {
					maxWorker = v
				}
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/stream?n=%d&size=%d", c.URL, blocks, size), nil)
	start := time.Now()
	r, err := testClient.Do(req)
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	// read slowly at first so that backpressure matters, then at full speed
	buf := make([]byte, 1<<20)
	var n int64
	for i := 0; i < 20; i++ {
		k, err := io.ReadFull(r.Body, buf[:64*1024])
		n += int64(k)
		if err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	m, err := io.CopyBuffer(io.Discard, r.Body, buf)
	n += m
	r.Body.Close()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("stream read error after %d bytes: %v", n, err)
	}
	if r.Header.Get("X-Pid") != strconv.Itoa(pd.Pid) {
		t.Errorf("served by pid %s, sampled %d", r.Header.Get("X-Pid"), pd.Pid)
	}
	if n != blocks*size {
		t.Errorf("received %d bytes, want %d", n, blocks*size)
	}
	t.Logf("1 GiB in %v; VmRSS caddy %d->%d KiB, worker %d->%d KiB", time.Since(start), baseCaddy, maxCaddy, baseWorker, maxWorker)
	const limit = 128 * 1024 // KiB
	if maxCaddy-baseCaddy > limit {
		t.Errorf("caddy VmRSS grew by %d KiB while streaming 1 GiB (limit %d KiB)", maxCaddy-baseCaddy, limit)
	}
	if maxWorker-baseWorker > limit {
		t.Errorf("worker VmRSS grew by %d KiB while streaming 1 GiB (limit %d KiB)", maxWorker-baseWorker, limit)
	}
}

// ---------------------------------------------------------------------------------------------
// close()

func TestIterableCloseCalled(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "behave", "workers 1", "threads 1", "queue_timeout 20s"))

	t.Run("after_success", func(t *testing.T) {
		id := token("ok")
		resp, body := get(t, c.URL+"/close-track?mode=ok&id="+id)
		if resp.StatusCode != 200 || string(body) != "block-1\nblock-2\nblock-3\n" {
			t.Errorf("got %d %q", resp.StatusCode, body)
		}
		if _, ok := waitFile(filepath.Join(c.Dir, "closed-"+id), 5*time.Second); !ok {
			t.Errorf("close() not called after a successful response")
		}
	})
	t.Run("after_exception", func(t *testing.T) {
		id := token("raise")
		resp, err := testClient.Get(c.URL + "/close-track?mode=raise&id=" + id)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("response ended cleanly although the iterable raised after the first block")
		}
		if _, ok := waitFile(filepath.Join(c.Dir, "closed-"+id), 5*time.Second); !ok {
			t.Errorf("close() not called after the iterable raised")
		}
		if m := waitLogLine(c, 5*time.Second, func(l string) bool { return strings.Contains(l, "tracked-raise-"+id) }); len(m) == 0 {
			t.Errorf("traceback not logged")
		}
	})
	t.Run("after_client_disconnect", func(t *testing.T) {
		id := token("gone")
		tr := &http.Transport{DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		cl := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		resp, err := cl.Get(c.URL + "/close-track?mode=slow&id=" + id)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64*1024)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatalf("first block: %v", err)
		}
		resp.Body.Close() // closes the connection mid-response
		gone := time.Now()
		content, ok := waitFile(filepath.Join(c.Dir, "closed-"+id), 10*time.Second)
		if !ok {
			t.Fatalf("close() not called within 10 s after the client went away")
		}
		t.Logf("close() called %v after disconnect (%s)", time.Since(gone), content)
		// the single worker is free again: a follow-up request is served quickly
		st := time.Now()
		code, body, err := tryGet(c.URL+"/pid", 10*time.Second)
		if err != nil || code != 200 {
			t.Fatalf("follow-up request: %d %v %s", code, err, body)
		}
		if d := time.Since(st); d > 3*time.Second {
			t.Errorf("follow-up request on the 1-worker pool took %v; the worker was not freed promptly", d)
		}
	})
}

// ---------------------------------------------------------------------------------------------
// wsgi.file_wrapper

func TestFileWrapper(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "behave", "workers 1"))
	t.Run("real_file_20MiB", func(t *testing.T) {
		data := randomBytes(t, 20<<20+123)
		path := filepath.Join(c.Dir, "big.bin")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ { // twice: the fd handling must not leak or corrupt
			resp, body := get(t, c.URL+"/file?path="+path)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %.300s", resp.StatusCode, body)
			}
			if len(body) != len(data) || sha256hex(body) != sha256hex(data) {
				t.Errorf("file body: %d bytes sha %s, want %d sha %s", len(body), sha256hex(body), len(data), sha256hex(data))
			}
		}
	})
	t.Run("bytesio_without_fileno", func(t *testing.T) {
		id := token("bio")
		size := 3_000_001
		resp, body := get(t, fmt.Sprintf("%s/file-bytesio?size=%d&blk=8192&id=%s", c.URL, size, id))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %.300s", resp.StatusCode, body)
		}
		want := pattern(size)
		if !bytes.Equal(body, want) {
			t.Errorf("BytesIO body: %d bytes sha %s, want %d sha %s", len(body), sha256hex(body), size, sha256hex(want))
		}
		if _, ok := waitFile(filepath.Join(c.Dir, "closed-"+id), 5*time.Second); !ok {
			t.Errorf("file_wrapper did not close() the BytesIO")
		}
	})
}

// ---------------------------------------------------------------------------------------------
// logging

func TestErrorsAndPrintReachLog(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "behave", "workers 1"))
	tok := token("log")
	resp, body := get(t, c.URL+"/log?tok="+tok)
	var pd struct{ Pid int }
	if err := json.Unmarshal(body, &pd); resp.StatusCode != 200 || err != nil || pd.Pid == 0 {
		t.Fatalf("/log: %d %s", resp.StatusCode, body)
	}
	pidRe := regexp.MustCompile(`(?i)pid\D{0,4}` + strconv.Itoa(pd.Pid) + `\b`)
	for _, marker := range []string{"errors-marker-", "errors-lines-", "print-marker-", "stderr-marker-"} {
		m := waitLogLine(c, 5*time.Second, func(l string) bool { return strings.Contains(l, marker+tok) })
		if len(m) == 0 {
			t.Errorf("%s%s not in caddy's log", marker, tok)
			continue
		}
		if !pidRe.MatchString(m[0]) {
			t.Errorf("log line for %s is not tagged with the worker pid %d: %s", marker, pd.Pid, m[0])
		}
		if !strings.Contains(m[0], "http.handlers.wsgi") {
			t.Errorf("log line for %s is not under the http.handlers.wsgi logger: %s", marker, m[0])
		}
	}
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 + TLS

func TestHTTP2TLS(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock("skip_install_trust", "local_certs")+`
https://localhost:{HTTPS_PORT} {
	tls internal
	handle_path /behave/* {
		wsgi behave {
			python {PYTHON}
			chdir {APPS}
			env MARKER_DIR {TMP}
			workers 1
		}
	}
	handle {
		wsgi probe {
			python {PYTHON}
			chdir {APPS}
			workers 1
		}
	}
}
`)
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"},
		ForceAttemptHTTP2: true,
	}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	url := fmt.Sprintf("https://127.0.0.1:%d/h2/path?z=9", c.HTTPSPort)
	newReq := func(method string, body io.Reader) *http.Request {
		req, _ := http.NewRequest(method, url, body)
		req.Host = fmt.Sprintf("localhost:%d", c.HTTPSPort)
		req.Header.Set("Cookie", "a=1; b=2; c=3") // Go's HTTP/2 client sends these as crumbs
		req.Header.Add("X-Multi", "one")
		req.Header.Add("X-Multi", "two")
		return req
	}
	var resp *http.Response
	var err error
	deadline := time.Now().Add(15 * time.Second) // the internal CA issues the cert at startup
	for {
		resp, err = cl.Do(newReq("GET", nil))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("ProtoMajor = %d, want 2", resp.ProtoMajor)
	}
	d := parseProbe(t, resp, body)
	if d.WSGI.URLScheme != "https" {
		t.Errorf("wsgi.url_scheme = %q, want https", d.WSGI.URLScheme)
	}
	if d.Env["SERVER_PROTOCOL"] != "HTTP/2.0" {
		t.Errorf("SERVER_PROTOCOL = %q, want HTTP/2.0", d.Env["SERVER_PROTOCOL"])
	}
	if d.Env["HTTP_COOKIE"] != "a=1; b=2; c=3" {
		t.Errorf("HTTP_COOKIE = %q, want cookie crumbs joined with \"; \"", d.Env["HTTP_COOKIE"])
	}
	if d.Env["HTTP_X_MULTI"] != "one,two" {
		t.Errorf("HTTP_X_MULTI = %q, want \"one,two\"", d.Env["HTTP_X_MULTI"])
	}
	if d.Env["PATH_INFO"] != "/h2/path" || d.Env["QUERY_STRING"] != "z=9" {
		t.Errorf("PATH_INFO %q QUERY_STRING %q", d.Env["PATH_INFO"], d.Env["QUERY_STRING"])
	}
	if d.Env["HTTP_HOST"] == "" {
		t.Errorf("HTTP_HOST missing over HTTP/2")
	}

	// a body of unknown length (no content-length over h2) within buffer_body gets CONTENT_LENGTH
	payload := randomBytes(t, 100000)
	resp, err = cl.Do(newReq("POST", io.MultiReader(bytes.NewReader(payload[:1000]), bytes.NewReader(payload[1000:]))))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	d = parseProbe(t, resp, body)
	if d.Env["CONTENT_LENGTH"] != strconv.Itoa(len(payload)) {
		t.Errorf("h2 upload without length: CONTENT_LENGTH = %q, want %d", d.Env["CONTENT_LENGTH"], len(payload))
	}
	if d.BodySHA256 != sha256hex(payload) {
		t.Errorf("h2 upload body mismatch (%d bytes)", d.BodyLen)
	}

	h2get := func(path string) (*http.Response, []byte, error) {
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d%s", c.HTTPSPort, path), nil)
		req.Host = fmt.Sprintf("localhost:%d", c.HTTPSPort)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatalf("GET %s over h2: %v", path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Errorf("GET %s: ProtoMajor %d", path, resp.ProtoMajor)
		}
		return resp, b, err
	}
	// a file through wsgi.file_wrapper over TLS (no sendfile possible)
	data := randomBytes(t, 5<<20+3)
	fpath := filepath.Join(c.Dir, "tls.bin")
	os.WriteFile(fpath, data, 0o644)
	if _, b, err := h2get("/behave/file?path=" + fpath); err != nil || !bytes.Equal(b, data) {
		t.Errorf("file_wrapper over h2+TLS: %d bytes (want %d), err %v", len(b), len(data), err)
	}
	if _, b, err := h2get("/behave/stream?n=300&size=65536"); err != nil || len(b) != 300*65536 {
		t.Errorf("stream over h2: %d bytes, err %v", len(b), err)
	}
	// an exception after the headers resets the stream: the client sees an error, not a clean end
	resp, b, err := h2get("/behave/error-after-headers?id=h2")
	if err == nil {
		t.Errorf("h2: the response ended cleanly (%d, %q) although the app raised after the headers", resp.StatusCode, b)
	}
	// the client cancels an h2 stream mid-response: close() is called, the connection lives on
	id := token("h2gone")
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("https://127.0.0.1:%d/behave/close-track?mode=slow&id=%s", c.HTTPSPort, id), nil)
	req.Host = fmt.Sprintf("localhost:%d", c.HTTPSPort)
	if r, err := cl.Do(req); err != nil {
		t.Errorf("h2 slow stream: %v", err)
	} else {
		buf := make([]byte, 65536)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			t.Errorf("h2 slow stream first block: %v", err)
		}
		cancel()
		r.Body.Close()
		if _, ok := waitFile(filepath.Join(c.Dir, "closed-"+id), 10*time.Second); !ok {
			t.Errorf("h2 stream cancelled by the client: close() not called within 10 s")
		}
	}
	cancel()
	// the connection is still usable after the reset stream
	if _, b, err := h2get("/behave/write"); err != nil || string(b) != "ABCD" {
		t.Errorf("h2 request after a reset stream: %q %v", b, err)
	}
}

func TestAbortedUploadFreesWorker(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "probe", "workers 1", "threads 1", "buffer_body 1024", "queue_timeout 10s"))
	get(t, c.URL+"/") // the worker is up
	for _, mode := range []string{"content-length", "chunked"} {
		rc := dialRaw(t, c)
		head := "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000\r\n\r\n"
		part := string(bytes.Repeat([]byte("z"), 200000))
		if mode == "chunked" {
			head = "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			part = chunked([]byte(part), 10000)
			part = part[:len(part)-len("0\r\n\r\n")] // no last chunk
		}
		rc.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(rc, head+part)
		time.Sleep(300 * time.Millisecond) // the app is now blocked reading wsgi.input
		rc.Close()
		st := time.Now()
		code, body, err := tryGet(c.URL+"/", 15*time.Second)
		if err != nil || code != 200 {
			t.Errorf("%s: request after an aborted streamed upload: %d %v %.200s", mode, code, err, body)
		} else if el := time.Since(st); el > 3*time.Second {
			t.Errorf("%s: the single worker was busy for %v after the client abandoned its upload", mode, el)
		}
	}
}
