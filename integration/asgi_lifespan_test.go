//go:build linux

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestASGILifespan checks the lifespan protocol per worker (forked from a preloaded app:
// each worker still runs its own startup): startup runs before the worker takes requests
// and its state reaches every request; shutdown runs when Caddy
// stops; a failing startup keeps the worker out of rotation and logs why; `lifespan off`
// skips it.
func TestASGILifespan(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock()+`http://127.0.0.1:{PORT} {
	handle /fail/* {
		asgi asgi_ws_app:app {
			python {VENV}/bin/python
			chdir {APPS}
			env MARKER_DIR {TMP}/fail
			env FAIL_STARTUP pg-primary
			workers 1
		}
	}
	handle_path /off/* {
		asgi asgi_ws_app:app {
			python {VENV}/bin/python
			chdir {APPS}
			env MARKER_DIR {TMP}/off
			workers 1
			lifespan off
		}
	}
	handle_path /on/* {
		asgi asgi_ws_app:app {
			python {VENV}/bin/python
			chdir {APPS}
			env MARKER_DIR {TMP}
			workers 2
			lifespan on
			preload
			hooks hooks_markers
		}
	}
}
`)
	waitStatus(t, c.URL+"/on/state", 200, 60*time.Second)
	// Startup runs once in each of the two workers (the second may still be booting).
	startups := 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if startups = strings.Count(readMarker(c, "lifespan"), "startup"); startups >= 2 {
			break
		}
	}
	if startups != 2 {
		t.Errorf("want 2 startups (one per worker), marker has:\n%s", readMarker(c, "lifespan"))
	}
	seen := map[int]bool{}
	for i := 0; i < 20; i++ {
		_, body := get(t, c.URL+"/on/state")
		var st struct {
			StartedBy int    `json:"started_by"`
			Greeting  string `json:"greeting"`
			PID       int    `json:"pid"`
		}
		if err := json.Unmarshal(body, &st); err != nil || st.Greeting != "hello from lifespan" || st.StartedBy != st.PID {
			t.Fatalf("state: %s (%v)", body, err)
		}
		seen[st.PID] = true
	}

	// A failing startup: the worker never serves, the reason is logged, the site says 503.
	c.WaitLog(t, "database unreachable: pg-primary", 30*time.Second)
	if code, body, _ := tryGet(c.URL+"/fail/state", 10*time.Second); code != http.StatusServiceUnavailable {
		t.Errorf("failing startup: GET = %d %q, want 503", code, body)
	}

	// lifespan off: no startup ran, so the state the app relies on is missing.
	if code, _, _ := tryGet(c.URL+"/off/state", 30*time.Second); code != http.StatusInternalServerError {
		t.Errorf("lifespan off: GET /state = %d, want 500 (no lifespan state)", code)
	}
	if m := readMarker(c, "off/lifespan"); m != "" {
		t.Errorf("lifespan off still ran startup: %q", m)
	}

	// The server hooks run in ASGI workers too (post_worker_init once the loop is up).
	for pid := range seen {
		if readMarker(c, fmt.Sprintf("post_worker_init-%d", pid)) == "" {
			t.Errorf("no post_worker_init hook in worker %d", pid)
		}
	}

	// Shutdown runs in each worker when Caddy stops, then the worker_exit hook.
	c.Stop(t)
	m := readMarker(c, "lifespan")
	for pid := range seen {
		if !strings.Contains(m, fmt.Sprintf("shutdown %d", pid)) {
			t.Errorf("no lifespan shutdown for worker %d; marker:\n%s", pid, m)
		}
		if readMarker(c, fmt.Sprintf("worker_exit-%d", pid)) == "" {
			t.Errorf("no worker_exit hook in worker %d", pid)
		}
	}
}

// TestASGIDisconnectTimeoutTrailers checks http.disconnect while the app waits (long
// polling), the per-request timeout (504 without killing the worker, which serves other
// requests meanwhile), and response trailers.
func TestASGIDisconnectTimeoutTrailers(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock()+`http://127.0.0.1:{PORT} {
	wsgi_health /healthz
	asgi asgi_ws_app:app {
		python {VENV}/bin/python
		chdir {APPS}
		env MARKER_DIR {TMP}
		workers 1
		timeout 1s
	}
}
`)
	waitStatus(t, c.URL+"/state", 200, 60*time.Second)
	pids := c.WorkerPids()
	// The health check works for an asgi pool as for a wsgi one.
	if body := waitStatus(t, c.URL+"/healthz", 200, 10*time.Second); !strings.Contains(string(body), `"status":"ready"`) {
		t.Errorf("wsgi_health of an asgi pool: %s", body)
	}

	// The client gives up on a long poll: the app's receive() returns http.disconnect.
	cl := &http.Client{Timeout: 300 * time.Millisecond}
	if resp, err := cl.Get(c.URL + "/wait-disconnect"); err == nil {
		resp.Body.Close()
		t.Fatalf("long poll answered: %d", resp.StatusCode)
	}
	waitMarker(t, c, "disconnects", "http.disconnect", 10*time.Second)

	// A request past its timeout gets 504; the worker lives and serves others meanwhile.
	done := make(chan int, 1)
	start := time.Now()
	go func() {
		code, _, _ := tryGet(c.URL+"/slow", 20*time.Second)
		done <- code
	}()
	time.Sleep(200 * time.Millisecond)
	if code, _, err := tryGet(c.URL+"/state", 5*time.Second); code != 200 {
		t.Errorf("a request beside a slow one: %d %v", code, err)
	}
	if code := <-done; code != http.StatusGatewayTimeout {
		t.Errorf("slow request: %d, want 504", code)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("504 came after %v", took)
	}
	c.WaitLog(t, "request timed out; cancelling it", 5*time.Second)
	if now := c.WorkerPids(); fmt.Sprint(now) != fmt.Sprint(pids) {
		t.Errorf("the worker was replaced after a timeout: %v → %v", pids, now)
	}

	// A FileResponse goes out through http.response.pathsend (Caddy's sendfile): whole,
	// with its length, and HEAD and ranges still work.
	resp, body := get(t, c.URL+"/file")
	want := bytes.Repeat(func() []byte {
		b := make([]byte, 256)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}(), (5<<20)/256)
	if resp.StatusCode != 200 || !bytes.Equal(body, want) || resp.ContentLength != int64(len(want)) {
		t.Errorf("FileResponse: %d, %d bytes (Content-Length %d), want %d", resp.StatusCode, len(body), resp.ContentLength, len(want))
	}
	resp, body = do(t, "GET", c.URL+"/file", map[string]string{"Range": "bytes=256-511"}, nil)
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, want[:256]) {
		t.Errorf("FileResponse range: %d, %d bytes", resp.StatusCode, len(body))
	}

	// Trailers (http.response.trailers) reach an HTTP/1.1 client after the chunked body.
	resp, body = get(t, c.URL+"/raw/")
	if string(body) != "part one, part two" || resp.Trailer.Get("X-Checksum") != "abc123" {
		t.Errorf("trailers: body %q, trailer %v", body, resp.Trailer)
	}
}

// TestASGIEventLoop: uvloop runs the loop when the app's environment has it (the test
// venv), asyncio's own loop otherwise (a bare interpreter). An app without lifespan
// support gets one log line, not a failure (lifespan auto).
func TestASGIEventLoop(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock()+`http://127.0.0.1:{PORT} {
	handle_path /venv/* {
		asgi asgi_loop_probe:app {
			python {VENV}/bin/python
			chdir {APPS}
			workers 1
		}
	}
	handle_path /bare/* {
		asgi asgi_loop_probe:app {
			python {PYTHON}
			chdir {APPS}
			workers 1
		}
	}
}
`)
	if body := waitStatus(t, c.URL+"/venv/", 200, 60*time.Second); !strings.HasPrefix(string(body), "uvloop.") {
		t.Errorf("with uvloop installed the loop is %q", body)
	}
	if body := waitStatus(t, c.URL+"/bare/", 200, 60*time.Second); !strings.HasPrefix(string(body), "asyncio.") {
		t.Errorf("without uvloop the loop is %q", body)
	}
	c.WaitLog(t, "ASGI lifespan unsupported by the app (lifespan auto), going on", 10*time.Second)
}

// TestASGIBlockedLoop: an app that blocks its event loop (sync code in an async view) is
// past its timeout: the client gets 504 at once, and when the loop does not answer the
// cancel within 5 s the worker is killed with every thread's stack in the log, then
// replaced.
func TestASGIBlockedLoop(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock()+`http://127.0.0.1:{PORT} {
	asgi asgi_ws_app:app {
		python {VENV}/bin/python
		chdir {APPS}
		env MARKER_DIR {TMP}
		workers 1
		timeout 1s
	}
}
`)
	waitStatus(t, c.URL+"/state", 200, 60*time.Second)
	before := c.WorkerPids()
	start := time.Now()
	if code, _, err := tryGet(c.URL+"/block?s=60", 30*time.Second); code != http.StatusGatewayTimeout {
		t.Errorf("blocked loop: %d %v, want 504", code, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the 504 came after %v; the timeout is 1s", took)
	}
	c.WaitLog(t, "request timed out; killing the worker", 15*time.Second)
	if logs := c.Logs(); !strings.Contains(logs, "time.sleep(s)") && !strings.Contains(logs, "in block") {
		t.Errorf("the stacks of the blocked worker are not in the log:\n%s", tail(logs, 3000))
	}
	body := waitStatus(t, c.URL+"/state", 200, 30*time.Second)
	var st struct {
		PID int `json:"pid"`
	}
	json.Unmarshal(body, &st)
	if len(before) != 1 || st.PID == before[0] {
		t.Errorf("the blocked worker %v still serves (pid %d)", before, st.PID)
	}
}
