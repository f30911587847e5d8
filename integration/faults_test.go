//go:build linux

package integration

// Reliability under faults (testdata/apps/faults.py): workers that crash (SIGSEGV, os._exit,
// SIGKILL) while other requests queue, workers that write garbage on their channel, a
// client that leaves mid-upload, an app that fails to import (503 + Retry-After, growing
// backoff), slow clients (slowloris, slow uploads, slow readers) and overload (5,000
// concurrent requests against 2 workers).
//
// TestSlowClients and TestOverload are not parallel: they measure latency and memory and
// need the machine to themselves (Go runs every non-parallel test before the parallel ones).

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// raiseNoFile raises the soft open-file limit of the test process (inherited by caddy and
// its workers) to want, or to the hard limit.
func raiseNoFile(t *testing.T, want uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if lim.Cur >= want {
		return
	}
	old := lim.Cur
	lim.Cur = min(want, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("setrlimit NOFILE %d: %v", lim.Cur, err)
	}
	t.Logf("open-file limit raised from %d to %d", old, lim.Cur)
	if lim.Cur < want {
		t.Logf("note: the hard open-file limit %d is below the %d wanted", lim.Max, want)
	}
}

// ---------------------------------------------------------------------------------------------
// crashes: only the request of the crashed worker fails; queued requests go to the others

var crashFigures struct {
	sync.Mutex
	ms map[string]int
}

func TestCrashOnlyFailsItsRequest(t *testing.T) {
	t.Parallel()
	t.Cleanup(func() {
		crashFigures.Lock()
		defer crashFigures.Unlock()
		var parts []string
		worst := 0
		for k, v := range crashFigures.ms {
			parts = append(parts, fmt.Sprintf("%s=%d", k, v))
			worst = max(worst, v)
		}
		sort.Strings(parts)
		if len(parts) > 0 {
			t.Logf("FIGURE crash_to_replacement_ms=%d (worst of: %s)", worst, strings.Join(parts, " "))
		}
	})
	for _, kind := range []string{"segv", "exit", "sigkill"} {
		kind := kind
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			testCrashQueued(t, kind)
		})
	}
}

func testCrashQueued(t *testing.T, kind string) {
	c := startCaddy(t, wsgiSite(localSite, "faults", "workers 2", "threads 1", "queue_timeout 20s"))
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	c.waitWorkers(t, 2, 15*time.Second)

	// 1. The crashing request holds one worker; 8 more requests wait for the other one (FIFO
	// queue, or pipelined behind a running exchange). The crash fails its own request only.
	id := token("cr")
	var crashURL string
	switch kind {
	case "segv":
		crashURL = c.URL + "/segv?delay=0.8&id=" + id
	case "exit":
		crashURL = c.URL + "/exit?delay=0.8&code=3&id=" + id
	case "sigkill":
		crashURL = c.URL + "/sleep?s=30&id=" + id
	}
	crash := goGet(crashURL, 40*time.Second)
	victim := readPidMarker(t, c, id)
	var others []<-chan asyncResult
	for i := 0; i < 8; i++ {
		others = append(others, goGet(c.URL+"/sleep?s=0.15", 40*time.Second))
	}
	if kind == "sigkill" {
		time.Sleep(300 * time.Millisecond)
		if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	r := awaitResult(t, crash, 30*time.Second, "the crashing request")
	crashedAt := time.Now()
	if r.err != nil || r.code != 502 {
		t.Errorf("request whose worker crashed (%s): %d %v %.200s, want 502", kind, r.code, r.err, r.body)
	}
	// replacement time: from the 502 to a new worker process alive
	var replaced time.Duration
	deadline := time.Now().Add(15 * time.Second)
	for {
		ps := c.WorkerPids()
		if len(ps) >= 2 && !contains(ps, victim) {
			replaced = time.Since(crashedAt)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %d not replaced within 15 s; children %v", victim, ps)
		}
		time.Sleep(5 * time.Millisecond)
	}
	ready := waitLogEntries(c, "worker ready", 3, 10*time.Second, nil)
	t.Logf("FIGURE crash_to_replacement_ms=%d kind=%s (new process after %v; %d \"worker ready\" entries)",
		replaced.Milliseconds(), kind, replaced.Round(time.Millisecond), len(ready))
	crashFigures.Lock()
	if crashFigures.ms == nil {
		crashFigures.ms = map[string]int{}
	}
	crashFigures.ms[kind] = int(replaced.Milliseconds())
	crashFigures.Unlock()

	for i, ch := range others {
		o := awaitResult(t, ch, 40*time.Second, "queued request")
		if o.err != nil || o.code != 200 {
			t.Errorf("queued request %d while a worker crashed (%s): %d %v %.200s, want 200", i, kind, o.code, o.err, o.body)
		} else if p := pidOf(t, o.body); p == victim {
			t.Errorf("queued request %d was answered by the crashed worker %d", i, p)
		}
	}

	// the log says which worker died and how
	wantStatus := map[string]string{"segv": "segmentation fault", "exit": "exit status 3", "sigkill": "killed"}[kind]
	ents := waitLogEntries(c, "worker exited; replacing it", 1, 5*time.Second, func(e map[string]any) bool { return entryInt(e, "pid") == victim })
	if len(ents) == 0 {
		t.Errorf("no \"worker exited; replacing it\" entry for pid %d", victim)
	} else if st, _ := ents[0]["status"].(string); !strings.Contains(st, wantStatus) {
		t.Errorf("exit entry status %q, want it to contain %q: %s", st, wantStatus, entryJSON(ents[0]))
	}
	if lost := waitLogLine(c, 5*time.Second, func(l string) bool {
		return strings.Contains(l, "worker lost during request") && strings.Contains(l, id)
	}); len(lost) == 0 {
		t.Errorf("no \"worker lost during request\" entry naming the request %s", crashURL)
	}
	if kind == "sigkill" {
		checkLaterRequestsSucceed(t, c, 4)
		return
	}

	// 2. Bursts of short requests with one crash among them: short exchanges get pipelined
	// behind running ones, so requests sent behind the crashing one must be re-dispatched.
	for i := 0; i < 20; i++ { // a short smoothed service time enables pipelining
		get(t, c.URL+"/pid")
	}
	for round := 0; round < 3; round++ {
		const n = 40
		var wg sync.WaitGroup
		results := make([]asyncResult, n)
		start := make(chan struct{})
		crashIdx := n / 2
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				url := c.URL + "/pid"
				if i == crashIdx {
					time.Sleep(2 * time.Millisecond)
					url = c.URL + "/" + kind + "?code=3"
				}
				results[i] = <-goGet(url, 40*time.Second)
			}(i)
		}
		close(start)
		wg.Wait()
		failed := 0
		for i, res := range results {
			if i == crashIdx {
				if res.code != 502 {
					t.Errorf("round %d: the crashing request %s got %d %v %.300q, want 502", round, "/"+kind, res.code, res.err, res.body)
				}
				continue
			}
			if res.err != nil || res.code != 200 {
				failed++
				if failed <= 3 {
					t.Errorf("round %d: request %d sent with a crashing one: %d %v %.200s, want 200", round, i, res.code, res.err, res.body)
				}
			}
		}
		if failed > 0 {
			t.Errorf("round %d: %d of %d innocent requests failed", round, failed, n-1)
		}
		c.waitWorkers(t, 2, 15*time.Second)
	}
	if c.Exited() {
		t.Fatalf("caddy exited")
	}
	checkLaterRequestsSucceed(t, c, 4)
}

// ---------------------------------------------------------------------------------------------
// every response goes to its own request, under the load where short requests are pipelined

func TestNoResponseMixup(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "faults", "workers 2", "threads 1"))
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	c.waitWorkers(t, 2, 15*time.Second)
	const goroutines, perG = 16, 1500
	deadline := time.Now().Add(20 * time.Second)
	var total, mixed, failed atomic.Int64
	var mu sync.Mutex
	var samples []string
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr, Timeout: 20 * time.Second}
			for i := 0; i < perG && time.Now().Before(deadline); i++ {
				tok := fmt.Sprintf("t%d-%d", g, i)
				resp, err := cl.Get(c.URL + "/echo?tok=" + tok)
				total.Add(1)
				if err != nil {
					failed.Add(1)
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					continue
				}
				if got := strings.Fields(string(b)); len(got) != 2 || got[0] != tok {
					mixed.Add(1)
					mu.Lock()
					if len(samples) < 5 {
						samples = append(samples, fmt.Sprintf("request tok=%s got %q", tok, b))
					}
					mu.Unlock()
				}
			}
		}(g)
	}
	wg.Wait()
	t.Logf("%d requests from %d concurrent clients to 2 single-threaded workers: %d answered with another request's response, %d failed",
		total.Load(), goroutines, mixed.Load(), failed.Load())
	if mixed.Load() > 0 {
		t.Errorf("%d responses went to the wrong request, e.g.:\n%s", mixed.Load(), strings.Join(samples, "\n"))
	}
	if failed.Load() > 0 {
		t.Errorf("%d requests failed", failed.Load())
	}
}

// ---------------------------------------------------------------------------------------------
// garbage on the wire

func TestWorkerSendsGarbage(t *testing.T) {
	t.Parallel()
	t.Run("during_request", func(t *testing.T) {
		t.Parallel()
		c := startCaddy(t, wsgiSite(localSite, "faults", "workers 2", "threads 1", "timeout 20s"))
		waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
		c.waitWorkers(t, 2, 15*time.Second)
		for _, kind := range []string{"oversize", "unknown", "body-first", "bad-headers"} {
			id := token("gb")
			uri := "/garbage?kind=" + kind + "&id=" + id
			// a request on the other worker runs across the breakage
			other := goGet(c.URL+"/sleep?s=0.5", 30*time.Second)
			st := time.Now()
			code, body, err := tryGet(c.URL+uri, 30*time.Second)
			el := time.Since(st)
			victim := readPidMarker(t, c, id)
			if err != nil || code != 502 {
				t.Errorf("%s: %d %v %.200s, want 502", kind, code, err, body)
			}
			if el > 5*time.Second {
				t.Errorf("%s: the 502 took %v (Caddy waited for the worker instead of dropping it)", kind, el)
			}
			lines := waitLogLine(c, 5*time.Second, func(l string) bool {
				return strings.Contains(l, id) && (strings.Contains(l, "worker broke the protocol") || strings.Contains(l, "worker lost during request"))
			})
			if len(lines) == 0 {
				t.Errorf("%s: no \"worker broke the protocol\" / \"worker lost during request\" entry for %s", kind, uri)
			} else {
				t.Logf("%s: 502 after %v; %.300s", kind, el.Round(time.Millisecond), lines[0])
			}
			if alive := waitPidsGone([]int{victim}, 5*time.Second); len(alive) > 0 {
				t.Errorf("%s: worker %d that sent garbage is still alive 5 s later", kind, victim)
			}
			waitReplaced(t, c, 2, victim)
			if o := awaitResult(t, other, 30*time.Second, "concurrent request"); o.code != 200 {
				t.Errorf("%s: a concurrent request on the other worker: %d %v", kind, o.code, o.err)
			}
			checkLaterRequestsSucceed(t, c, 3)
			if c.Exited() {
				t.Fatalf("caddy exited after %s garbage", kind)
			}
		}
		if strings.Contains(c.Logs(), "panic") && strings.Contains(c.Logs(), "goroutine ") {
			t.Errorf("caddy's log shows a Go panic")
		}
	})
	t.Run("while_idle", func(t *testing.T) {
		t.Parallel()
		// the worker answers, then writes garbage while no exchange runs on its channel
		c := startCaddy(t, wsgiSite(localSite, "faults", "workers 1", "threads 1", "timeout 20s"))
		waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
		resp, body := get(t, c.URL+"/garbage-idle?kind=oversize&after=0.2")
		if resp.StatusCode != 200 {
			t.Fatalf("/garbage-idle: %d %.200s", resp.StatusCode, body)
		}
		victim := pidOf(t, body)
		time.Sleep(600 * time.Millisecond) // the garbage is on the channel now
		var statuses []int
		for i := 0; i < 6; i++ {
			code, b, err := tryGet(c.URL+"/pid", 20*time.Second)
			statuses = append(statuses, code)
			if code == 200 && pidOf(t, b) == victim {
				t.Errorf("request %d was served by the worker %d that wrote garbage on its channel", i, victim)
			}
			_ = err
		}
		failed := 0
		for i, s := range statuses {
			if s != 200 {
				failed++
				if i > 0 {
					t.Errorf("request %d after the garbage: %d (statuses %v); only the first may fail", i, s, statuses)
				}
			}
		}
		if failed > 0 {
			t.Logf("note: %d innocent request(s) got %v: the garbage written while idle was found by the next exchange, not before", failed, statuses)
		}
		if alive := waitPidsGone([]int{victim}, 5*time.Second); len(alive) > 0 {
			t.Errorf("worker %d that wrote garbage while idle is still alive", victim)
		}
		if c.Exited() {
			t.Fatalf("caddy exited")
		}
	})
}

// ---------------------------------------------------------------------------------------------
// client gone mid-upload: the worker is freed and the iterable's close() runs

func TestUploadAbortRunsClose(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "faults", "workers 1", "threads 1", "buffer_body 1024", "queue_timeout 10s"))
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	for _, mode := range []string{"content-length", "chunked"} {
		id := token("ua")
		rc := dialRaw(t, c)
		head := "POST /upload-track?id=" + id + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000\r\n\r\n"
		part := strings.Repeat("z", 200000)
		if mode == "chunked" {
			head = "POST /upload-track?id=" + id + " HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			part = chunked([]byte(part), 10000)
			part = part[:len(part)-len("0\r\n\r\n")] // no last chunk
		}
		rc.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(rc, head+part)
		if _, ok := waitFile(filepath.Join(c.Dir, "reading-"+id), 10*time.Second); !ok {
			t.Fatalf("%s: the app never started reading the upload", mode)
		}
		rc.Close()
		gone := time.Now()
		content, ok := waitFile(filepath.Join(c.Dir, "closed-"+id), 10*time.Second)
		if !ok {
			t.Errorf("%s: close() of the iterable did not run within 10 s of the client leaving mid-upload", mode)
		} else {
			t.Logf("%s: close() ran %v after the client left (%s)", mode, time.Since(gone).Round(time.Millisecond), content)
			if f := strings.Fields(content); len(f) < 2 || f[1] == "eof" {
				t.Errorf("%s: close() marker %q: the iterable saw a complete body although the upload was cut", mode, content)
			}
		}
		st := time.Now()
		code, body, err := tryGet(c.URL+"/pid", 15*time.Second)
		if err != nil || code != 200 {
			t.Errorf("%s: request after the aborted upload: %d %v %.200s", mode, code, err, body)
		} else if el := time.Since(st); el > 2*time.Second {
			t.Errorf("%s: the single worker stayed busy %v after the client left", mode, el)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// every worker crashing at import: 503 + Retry-After, growing backoff, other sites unaffected

func TestImportFailureBackoffAndRetryAfter(t *testing.T) {
	t.Parallel()
	c, _ := newCaddyfileWithBroken(t)
	brokenHost := map[string]string{"Host": fmt.Sprintf("127.0.0.1:%d", c.Port)}
	goodHost := map[string]string{"Host": fmt.Sprintf("localhost:%d", c.Port)}
	c.WaitLog(t, "No module named 'nonexistent_module_xyz'", 20*time.Second)

	resp, body := do(t, "GET", c.URL+"/", brokenHost, nil)
	if resp.StatusCode != 503 {
		t.Errorf("app that fails to import: %d %.200s, want 503", resp.StatusCode, body)
	}
	ra := resp.Header.Get("Retry-After")
	if n, err := strconv.Atoi(ra); err != nil || n < 1 {
		t.Errorf("503 of a failing pool: Retry-After %q, want a number of seconds >= 1", ra)
	}
	// other sites are served meanwhile, promptly
	st := time.Now()
	resp, body = do(t, "GET", c.URL+"/", goodHost, nil)
	if resp.StatusCode != 200 || time.Since(st) > 2*time.Second {
		t.Errorf("the other site while the pool fails: %d after %v %.200s", resp.StatusCode, time.Since(st), body)
	}
	// the backoff grows: 100 ms, 200 ms, 400 ms, ... (capped at 5 s)
	ents := waitLogEntries(c, "restarting worker after backoff", 5, 20*time.Second, nil)
	var backoffs []float64
	for _, e := range ents {
		if v, ok := entrySeconds(e, "backoff"); ok {
			backoffs = append(backoffs, v)
		}
	}
	t.Logf("backoffs (s): %v", backoffs)
	if len(backoffs) < 5 {
		t.Fatalf("%d \"restarting worker after backoff\" entries with a backoff within 20 s, want >= 5", len(backoffs))
	}
	for i := 1; i < len(backoffs); i++ {
		if backoffs[i] < backoffs[i-1] {
			t.Errorf("backoff shrank: %v", backoffs)
			break
		}
	}
	if backoffs[4] < 4*backoffs[0] {
		t.Errorf("backoff does not grow: %v (5th %v, 1st %v)", backoffs, backoffs[4], backoffs[0])
	}
	for _, b := range backoffs {
		if b > 5.001 {
			t.Errorf("backoff %v s over the 5 s cap", b)
		}
	}
	if fails := logEntries(c, "worker failed to import the app"); len(fails) < 5 {
		t.Errorf("%d \"worker failed to import the app\" entries, want one per attempt (>= 5)", len(fails))
	}
	// still 503 with Retry-After, still quick
	st = time.Now()
	resp, _ = do(t, "GET", c.URL+"/", brokenHost, nil)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || time.Since(st) > 5*time.Second {
		t.Errorf("later request to the failing pool: %d Retry-After %q after %v", resp.StatusCode, resp.Header.Get("Retry-After"), time.Since(st))
	}
}

// ---------------------------------------------------------------------------------------------
// slow clients

// medianLatency times n sequential GETs on one keep-alive connection; it stops at the first
// failure (a status other than 200 or a request over 3 s).
func medianLatency(url string, n int) (time.Duration, error) {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 3 * time.Second}
	var lat []time.Duration
	for i := 0; i < n; i++ {
		st := time.Now()
		resp, err := cl.Get(url)
		if err != nil {
			return 0, fmt.Errorf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("request %d: status %d after %v", i, resp.StatusCode, time.Since(st))
		}
		lat = append(lat, time.Since(st))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat[len(lat)/2], nil
}

// trickler writes one byte to each of its connections every period.
type trickler struct {
	mu    sync.Mutex
	conns []net.Conn
	dead  atomic.Int64
	stop  chan struct{}
	done  chan struct{}
}

func newTrickler(period time.Duration, b byte) *trickler {
	tr := &trickler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-tr.stop:
				return
			case <-tick.C:
			}
			tr.mu.Lock()
			conns := tr.conns
			tr.mu.Unlock()
			for i, c := range conns {
				if c == nil {
					continue
				}
				c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				if _, err := c.Write([]byte{b}); err != nil {
					tr.mu.Lock()
					tr.conns[i] = nil
					tr.mu.Unlock()
					tr.dead.Add(1)
				}
			}
		}
	}()
	return tr
}

func (tr *trickler) add(c net.Conn) {
	tr.mu.Lock()
	tr.conns = append(tr.conns, c)
	tr.mu.Unlock()
}

func (tr *trickler) close() {
	close(tr.stop)
	<-tr.done
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, c := range tr.conns {
		if c != nil {
			c.Close()
		}
	}
}

func dialN(t *testing.T, c *Caddy, n int, head string) []net.Conn {
	t.Helper()
	out := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.Port), 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		if _, err := io.WriteString(conn, head); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		out = append(out, conn)
	}
	return out
}

func TestSlowClients(t *testing.T) {
	raiseNoFile(t, 8192)
	c := startCaddy(t, wsgiSite(localSite, "faults", "workers 1", "threads 1", "queue_timeout 5s", "name slow"))
	url := c.URL + "/pid"
	waitStatus(t, url, 200, 20*time.Second)
	medianLatency(url, 20) // warm up
	base, err := medianLatency(url, 50)
	if err != nil {
		t.Fatalf("baseline: %v", err)
	}
	t.Logf("baseline median latency %v", base)
	check := func(phase string) time.Duration {
		t.Helper()
		m, err := medianLatency(url, 50)
		if err != nil {
			t.Errorf("%s: normal requests to the 1-worker pool fail: %v", phase, err)
			return -1
		}
		delta := m - base
		t.Logf("FIGURE slow_clients_latency_delta_us=%d phase=%s (median %v, baseline %v)", delta.Microseconds(), phase, m, base)
		if delta >= 10*time.Millisecond {
			t.Errorf("%s: median latency %v, baseline %v: it rose by %v (want < 10 ms)", phase, m, base, delta)
		}
		return delta
	}

	// 1. 1,000 slowloris connections: header bytes trickling, one every 200 ms
	loris := newTrickler(200*time.Millisecond, 'a')
	defer loris.close()
	for _, conn := range dialN(t, c, 1000, "GET /pid HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ") {
		loris.add(conn)
	}
	time.Sleep(time.Second)
	check("slowloris_1000")

	// 2. + 100 slow uploads of a body under buffer_body, one byte every 200 ms: Caddy
	// reads them; no worker thread is taken
	uploads := newTrickler(200*time.Millisecond, 'u')
	defer uploads.close()
	for _, conn := range dialN(t, c, 100, "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n") {
		uploads.add(conn)
	}
	time.Sleep(time.Second)
	maxBusy := 0
	for i := 0; i < 10; i++ {
		p := mustPool(t, c, "slow")
		maxBusy = max(maxBusy, p.BusyThreads)
		time.Sleep(100 * time.Millisecond)
	}
	if maxBusy != 0 {
		t.Errorf("during 100 slow uploads below buffer_body, GET /wsgi/pools showed busy_threads %d, want 0", maxBusy)
	}
	check("plus_slow_uploads_100")

	// 3. + 100 slow readers of a 12 MiB response (more than the socket buffers hold): half never read, half read 1 KiB every 200 ms
	readers := dialN(t, c, 100, "GET /big?mb=12 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	stopReaders := make(chan struct{})
	var rwg sync.WaitGroup
	for i, conn := range readers {
		if i%2 == 1 {
			continue
		}
		rwg.Add(1)
		go func(conn net.Conn) {
			defer rwg.Done()
			buf := make([]byte, 1024)
			for {
				select {
				case <-stopReaders:
					return
				case <-time.After(200 * time.Millisecond):
				}
				conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				conn.Read(buf)
			}
		}(conn)
	}
	defer func() {
		close(stopReaders)
		rwg.Wait()
		for _, conn := range readers {
			conn.Close()
		}
	}()
	time.Sleep(2 * time.Second)
	p := mustPool(t, c, "slow")
	t.Logf("with 100 slow readers of 12 MiB: busy_threads %d, queue_depth %d, caddy RSS %d MiB", p.BusyThreads, p.QueueDepth, vmRSS(c.Pid())/1024)
	check("plus_slow_readers_100")
	p = mustPool(t, c, "slow")
	if p.BusyThreads != 0 || p.QueueDepth != 0 {
		t.Errorf("with 100 slow readers of a 12 MiB response: busy_threads %d queue_depth %d, want 0 (a slow reader holds the worker)", p.BusyThreads, p.QueueDepth)
	}
	if d := loris.dead.Load() + uploads.dead.Load(); d > 0 {
		t.Logf("note: %d slow connections were closed by caddy during the test", d)
	}
	if c.Exited() {
		t.Fatalf("caddy exited")
	}
}

// ---------------------------------------------------------------------------------------------
// overload

func TestOverload(t *testing.T) {
	raiseNoFile(t, 16384)
	c := startCaddy(t, wsgiSite(localSite, "faults", "workers 2", "threads 1", "queue_timeout 2s"))
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	c.waitWorkers(t, 2, 15*time.Second)
	rss0 := vmRSS(c.Pid())

	var peak atomic.Int64
	samplerDone := make(chan struct{})
	ctx, stopSampler := context.WithCancel(context.Background())
	go func() {
		defer close(samplerDone)
		for ctx.Err() == nil {
			if r := vmRSS(c.Pid()); int64(r) > peak.Load() {
				peak.Store(int64(r))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	const n = 5000
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true, MaxConnsPerHost: 0,
		DialContext: (&net.Dialer{Timeout: 60 * time.Second}).DialContext}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	type outcome struct {
		code  int
		retry string
		err   error
		el    time.Duration
	}
	res := make([]outcome, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			st := time.Now()
			resp, err := cl.Get(c.URL + "/sleep?s=0.05")
			if err != nil {
				res[i] = outcome{err: err, el: time.Since(st)}
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			res[i] = outcome{code: resp.StatusCode, retry: resp.Header.Get("Retry-After"), err: err, el: time.Since(st)}
		}(i)
	}
	st := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(st)
	stopSampler()
	<-samplerDone

	codes := map[int]int{}
	var errs []string
	noRetry := 0
	var slowest time.Duration
	for _, o := range res {
		slowest = max(slowest, o.el)
		if o.err != nil {
			if len(errs) < 5 {
				errs = append(errs, fmt.Sprintf("after %v: %v", o.el.Round(time.Millisecond), o.err))
			}
			codes[-1]++
			continue
		}
		codes[o.code]++
		if o.code == 503 && o.retry == "" {
			noRetry++
		}
	}
	peakMiB := peak.Load() / 1024
	t.Logf("FIGURE overload_outcomes=\"%d x 200, %d x 503, %d transport errors, %d other\" (%d concurrent requests to 2 workers, queue_timeout 2s, max_queue 1000, in %v, slowest %v)",
		codes[200], codes[503], codes[-1], n-codes[200]-codes[503]-codes[-1], n, elapsed.Round(time.Millisecond), slowest.Round(time.Millisecond))
	t.Logf("FIGURE overload_caddy_rss_mib=%d (before %d MiB, peak %d MiB)", peakMiB, rss0/1024, peakMiB)
	if codes[-1] > 0 {
		t.Errorf("%d of %d requests failed with a transport error, e.g.:\n%s", codes[-1], n, strings.Join(errs, "\n"))
	}
	for code, k := range codes {
		if code != 200 && code != 503 && code != -1 {
			t.Errorf("%d requests got status %d, want only 200 or 503", k, code)
		}
	}
	if noRetry > 0 {
		t.Errorf("%d of the %d 503 answers had no Retry-After", noRetry, codes[503])
	}
	if codes[200] == 0 {
		t.Errorf("no request succeeded under overload")
	}
	if peakMiB >= 300 {
		t.Errorf("caddy's RSS peaked at %d MiB under 5,000 concurrent requests, want < 300 MiB", peakMiB)
	}
	if n := len(logEntries(c, "no worker available")); n == 0 {
		t.Errorf("no \"no worker available\" log entries for the 503 answers")
	}
	// the pool is healthy afterwards
	for i := 0; i < 4; i++ {
		if code, b, err := tryGet(c.URL+"/pid", 10*time.Second); code != 200 {
			t.Errorf("after the overload: %d %v %.200s", code, err, b)
		}
	}
	if ps := c.WorkerPids(); len(ps) != 2 {
		t.Errorf("after the overload caddy has %d children %v, want the same 2 workers", len(ps), ps)
	}
}
