package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-wsgi/caddy-wsgi/protocol"
	"github.com/caddy-wsgi/caddy-wsgi/workerpool"
)

func TestCGIName(t *testing.T) {
	keys := newHeaderKeys()
	for in, want := range map[string]string{"X-Foo-Bar": "HTTP_X_FOO_BAR", "Accept": "HTTP_ACCEPT", "X-Odd9": "HTTP_X_ODD9"} {
		if got := keys.key(in); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

func TestParseStatus(t *testing.T) {
	for in, want := range map[string]int{"200 OK": 200, "404 Not Found": 404, "299": 299} {
		if got, err := parseStatus(in); err != nil || got != want {
			t.Errorf("%q: %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "OK", "20 OK", "200OK", "100 Continue", "abc def", "200 OK\r\nX: y"} {
		if _, err := parseStatus(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestApplyHeaders(t *testing.T) {
	h := http.Header{}
	dropped, err := applyHeaders(h, []string{"content-type", "text/plain", "Connection", "close", "X-A", "1", "x-a", "2"})
	if err != nil || h.Get("Content-Type") != "text/plain" || len(h["X-A"]) != 2 || len(dropped) != 1 || h.Get("Connection") != "" {
		t.Fatalf("%v %v %v", h, dropped, err)
	}
	for _, bad := range [][]string{{"X-A", "a\r\nb"}, {"X A", "b"}, {"X-A", "nul\x00"}, {"Content-Length", "-1"}, {"Content-Length", "1", "Content-Length", "2"}} {
		if _, err := applyHeaders(http.Header{}, bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestWriteEnviron(t *testing.T) {
	h := &Handler{keys: newHeaderKeys()}
	r := httptest.NewRequest("GET", "http://example.com:8080/app/a%2Fb/caf%C3%A9?x=1", nil)
	r.Header.Add("X-Foo", "a")
	r.Header.Add("X-Foo", "b")
	r.Header.Add("X_Bar", "spoof")
	r.Header.Add("Cookie", "a=1")
	r.Header.Add("Cookie", "b=2")
	var fw protocol.RequestWriter
	fw.Begin(0)
	// The configured script_name is stripped from the path once (a prefix handle_path
	// stripped comes as Request.ScriptName and is not stripped again).
	h.scriptName = "/app"
	if err := h.writeEnviron(&fw, r, Request{ClientIP: "10.0.0.9"}, -1, false); err != nil {
		t.Fatal(err)
	}
	frame, _ := fw.Finish(nil)
	_, pairs, _, err := protocol.DecodeRequest(frame[protocol.HeaderSize:])
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, p := range pairs {
		env[p[0]] = p[1]
	}
	want := map[string]string{
		"SCRIPT_NAME": "/app", "PATH_INFO": "/a/b/caf\xc3\xa9", "QUERY_STRING": "x=1",
		"SERVER_NAME": "example.com", "SERVER_PORT": "8080", "HTTP_HOST": "example.com:8080",
		"HTTP_X_FOO": "a,b", "HTTP_COOKIE": "a=1; b=2", "REMOTE_ADDR": "10.0.0.9", "wsgi.url_scheme": "http",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	if _, ok := env["HTTP_X_BAR"]; ok {
		t.Error("a header with an underscore must be dropped")
	}
	if _, ok := env["REMOTE_PORT"]; ok {
		t.Error("REMOTE_PORT of a proxy must not be reported for another client address")
	}
}

// TestServeWithRealWorkers runs the handler behind httptest with real Python workers,
// concurrently, so -race covers dispatch, pipelining and streaming.
func TestServeWithRealWorkers(t *testing.T) {
	pool, err := workerpool.New(workerpool.Config{App: "app:application", Chdir: "testdata", Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	pool.Start()
	t.Cleanup(func() { pool.Stop(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if !pool.WaitReady(ctx) {
		t.Fatal("pool not ready")
	}
	h := New(pool, Options{BufferBody: 1024})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r, Request{})
	}))
	defer srv.Close()

	var wg sync.WaitGroup
	errs := make(chan string, 400)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 40; j++ {
				resp, err := http.Get(srv.URL + "/")
				if err != nil {
					errs <- err.Error()
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != "hello" {
					errs <- resp.Status + " " + string(b)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}

	// A body above BufferBody streams through READ/DATA and comes back intact.
	big := bytes.Repeat([]byte("0123456789"), 10000)
	resp, err := http.Post(srv.URL+"/echo", "application/octet-stream", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, big) {
		t.Fatalf("streamed echo: %d bytes back, want %d", len(got), len(big))
	}

	resp, err = http.Get(srv.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Count(string(got), "chunk") != 5 {
		t.Fatalf("stream: %q", got)
	}

	resp, err = http.Get(srv.URL + "/env")
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]string
	json.NewDecoder(resp.Body).Decode(&env)
	resp.Body.Close()
	if env["REQUEST_METHOD"] != "GET" || env["PATH_INFO"] != "/env" || env["REMOTE_ADDR"] != "127.0.0.1" {
		t.Fatalf("environ: %v", env)
	}
}
