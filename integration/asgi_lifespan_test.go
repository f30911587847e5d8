package integration

import (
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

	// Shutdown runs in each worker when Caddy stops.
	c.Stop(t)
	m := readMarker(c, "lifespan")
	for pid := range seen {
		if !strings.Contains(m, fmt.Sprintf("shutdown %d", pid)) {
			t.Errorf("no lifespan shutdown for worker %d; marker:\n%s", pid, m)
		}
	}
}

// TestASGIDisconnectTimeoutTrailers checks http.disconnect while the app waits (long
// polling), the per-request timeout (504 without killing the worker, which serves other
// requests meanwhile), and response trailers.
func TestASGIDisconnectTimeoutTrailers(t *testing.T) {
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
	pids := c.WorkerPids()

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

	// Trailers (http.response.trailers) reach an HTTP/1.1 client after the chunked body.
	resp, body := get(t, c.URL+"/raw/")
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
