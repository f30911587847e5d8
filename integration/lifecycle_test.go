//go:build linux

package integration

// Worker lifecycle: per-request timeouts, boot timeout, recycling (max_requests,
// max_lifetime, max_rss), server hooks, and preload (a zygote that imports the app once).

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------------------------
// timeout

var timeoutFigures struct {
	sync.Mutex
	ms map[string]int
}

func TestTimeoutKillsStuckWorker(t *testing.T) {
	t.Parallel()
	t.Cleanup(func() {
		timeoutFigures.Lock()
		defer timeoutFigures.Unlock()
		var keys []string
		worst := -1
		for k, v := range timeoutFigures.ms {
			keys = append(keys, fmt.Sprintf("%s=%d", k, v))
			worst = max(worst, v)
		}
		sort.Strings(keys)
		if worst >= 0 {
			t.Logf("FIGURE timeout_to_504_ms=%d (worst of: %s)", worst, strings.Join(keys, " "))
		}
	})
	cases := []struct {
		name, path, fn string
	}{
		{"python_loop", "/loop", "loop_forever"},
		{"sleep_3600", "/sleep?s=3600", "sleep_long"},
		{"c_holds_gil", "/cspin", "c_spin"},
	}
	for _, tc := range cases {
		for _, threads := range []int{1, 2} {
			tc, threads := tc, threads
			name := fmt.Sprintf("%s/threads%d", tc.name, threads)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				testTimeoutCase(t, name, tc.path, tc.fn, threads)
			})
		}
	}
}

func testTimeoutCase(t *testing.T, name, path, fn string, threads int) {
	c := startCaddy(t, wsgiSite(localSite, "lifecycle", "workers 2", fmt.Sprintf("threads %d", threads), "timeout 1s"))
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	c.waitWorkers(t, 2, 15*time.Second)

	id := token("to")
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	uri := path + sep + "id=" + id
	st := time.Now()
	stuck := goGet(c.URL+uri, 30*time.Second)
	stuckPid := readPidMarker(t, c, id)
	// a request on the other worker, shorter than the timeout, running across the kill (from
	// about 0.5 s to 1.3 s after the stuck request began)
	time.Sleep(time.Until(st.Add(500 * time.Millisecond)))
	other := goGet(c.URL+"/sleep?s=0.8", 30*time.Second)

	r := awaitResult(t, stuck, 20*time.Second, "stuck request")
	late := r.elapsed - time.Second
	timeoutFigures.Lock()
	if timeoutFigures.ms == nil {
		timeoutFigures.ms = map[string]int{}
	}
	timeoutFigures.ms[name] = int(late.Milliseconds())
	timeoutFigures.Unlock()
	t.Logf("FIGURE timeout_to_504_ms=%d case=%s (504 after %v)", late.Milliseconds(), name, r.elapsed.Round(time.Millisecond))
	if r.err != nil || r.code != 504 {
		t.Errorf("stuck request %s with timeout 1s: status %d err %v after %v, want 504", uri, r.code, r.err, r.elapsed)
	}
	if r.elapsed < 950*time.Millisecond || r.elapsed > 4*time.Second {
		t.Errorf("stuck request answered after %v, want ~1 s (the timeout)", r.elapsed)
	}
	// requests sent right after the 504 succeed: none may be dispatched to the worker being
	// killed (with threads 2 its other thread looks idle)
	var after []<-chan asyncResult
	for i := 0; i < 4; i++ {
		after = append(after, goGet(c.URL+"/pid", 20*time.Second))
	}
	for i, ch := range after {
		ar := awaitResult(t, ch, 20*time.Second, "request after the 504")
		if ar.err != nil || ar.code != 200 {
			t.Errorf("request %d sent right after the 504: %d %v %.200s, want 200", i, ar.code, ar.err, ar.body)
		} else if p := pidOf(t, ar.body); p == stuckPid {
			t.Errorf("request %d sent right after the 504 was served by the killed worker %d", i, p)
		}
	}

	o := awaitResult(t, other, 30*time.Second, "concurrent request")
	if o.err != nil || o.code != 200 {
		t.Errorf("concurrent request on the other worker: %d %v %.200s, want 200", o.code, o.err, o.body)
	} else if p := pidOf(t, o.body); p == stuckPid {
		t.Errorf("concurrent request was served by the stuck worker %d", p)
	}

	// exactly one log entry, with the request, the timing and the stacks
	waitLogEntries(c, "request timed out; killing the worker", 1, 5*time.Second, nil)
	time.Sleep(300 * time.Millisecond)
	ents := logEntries(c, "request timed out; killing the worker")
	if len(ents) != 1 {
		t.Errorf("%d \"request timed out; killing the worker\" log entries, want exactly 1", len(ents))
	}
	if len(ents) > 0 {
		e := ents[0]
		if e["level"] != "error" || e["logger"] != "http.handlers.wsgi" {
			t.Errorf("timeout entry: level %v logger %v, want error http.handlers.wsgi", e["level"], e["logger"])
		}
		if entryInt(e, "pid") != stuckPid {
			t.Errorf("timeout entry pid %v, want %d", e["pid"], stuckPid)
		}
		if e["request"] != "GET "+uri {
			t.Errorf("timeout entry request %q, want %q", e["request"], "GET "+uri)
		}
		if v, ok := entrySeconds(e, "elapsed"); !ok || v < 0.95 || v > 4 {
			t.Errorf("timeout entry elapsed %v, want ~1 s", e["elapsed"])
		}
		if v, ok := entrySeconds(e, "timeout"); !ok || math.Abs(v-1) > 0.001 {
			t.Errorf("timeout entry timeout %v, want 1 s", e["timeout"])
		}
		stacks, _ := e["stacks"].(string)
		re := regexp.MustCompile(`File "[^"]*/lifecycle\.py", line \d+ in ` + fn)
		if !re.MatchString(stacks) {
			t.Errorf("timeout entry stacks lack the stuck frame (%s): %q", re, stacks)
		}
		if threads == 2 && strings.Count(stacks, "Thread 0x")+strings.Count(stacks, "Current thread 0x") < 2 {
			t.Logf("note: with threads 2 the dump shows fewer than 2 threads: %q", stacks)
		}
	}
	// the worker is killed and replaced; later requests succeed
	if alive := waitPidsGone([]int{stuckPid}, 5*time.Second); len(alive) > 0 {
		t.Errorf("stuck worker %d still alive 5 s after the timeout", stuckPid)
	}
	waitReplaced(t, c, 2, stuckPid)
	for i := 0; i < 4; i++ {
		if code, b, err := tryGet(c.URL+"/pid", 10*time.Second); code != 200 {
			t.Errorf("request after the timeout: %d %v %.200s", code, err, b)
		}
	}
}

// TestTimeoutStreaming: the deadline applies to the first block and to each gap between
// blocks; a response that stalls after its headers is aborted; `timeout off` disables it.
func TestTimeoutStreaming(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	wsgi lifecycle {
		python {PYTHON}
		chdir {APPS}
		env MARKER_DIR {TMP}
		workers 1
		timeout 1s
	}
}
http://localhost:{PORT} {
	wsgi lifecycle:application {
		python {PYTHON}
		chdir {APPS}
		env MARKER_DIR {TMP}
		workers 1
		timeout off
	}
}
`)
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	offURL := fmt.Sprintf("http://localhost:%d", c.Port)
	waitStatus(t, offURL+"/pid", 200, 20*time.Second)

	// a steady stream longer than the timeout, with gaps below it: complete
	st := time.Now()
	resp, body := get(t, c.URL+"/drip?n=6&interval=0.4")
	if resp.StatusCode != 200 || strings.Count(string(body), "block ") != 6 {
		t.Errorf("6 blocks 0.4 s apart with timeout 1s: %d %q after %v, want 200 and 6 blocks", resp.StatusCode, body, time.Since(st))
	}

	// headers and one block, then a stall: the response is aborted about 1 s later
	id := token("st")
	st = time.Now()
	sresp, err := testClient.Get(c.URL + "/stall?id=" + id)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(sresp.Header.Get("X-Pid"))
	b, err := io.ReadAll(sresp.Body)
	sresp.Body.Close()
	el := time.Since(st)
	if err == nil {
		t.Errorf("a response stalled after its headers ended cleanly after %v with %q; want an aborted response", el, b)
	}
	if el > 4*time.Second {
		t.Errorf("the stalled response was aborted after %v, want ~1 s", el)
	}
	if sresp.StatusCode != 200 || !strings.HasPrefix(string(b), "first block") {
		t.Errorf("stalled response: status %d body %q, want 200 and the first block", sresp.StatusCode, b)
	}
	ents := waitLogEntries(c, "request timed out; killing the worker", 1, 5*time.Second, nil)
	if len(ents) != 1 || !strings.Contains(entryJSON(ents[0]), "stall_after_first") && !strings.Contains(entryJSON(ents[0]), "sleep_long") {
		t.Errorf("timeout entries for the stalled stream: %v", ents)
	}
	if pid > 0 {
		if alive := waitPidsGone([]int{pid}, 5*time.Second); len(alive) > 0 {
			t.Errorf("worker %d of the stalled stream not killed", pid)
		}
	}

	// timeout off: a 2.5 s request completes
	if code, b, err := tryGet(offURL+"/sleep?s=2.5", 20*time.Second); code != 200 {
		t.Errorf("with `timeout off`, a 2.5 s request: %d %v %.200s, want 200", code, err, b)
	}
	if code, _, _ := tryGet(c.URL+"/pid", 20*time.Second); code != 200 {
		t.Errorf("after the stall: %d", code)
	}
}

// ---------------------------------------------------------------------------------------------
// boot_timeout

func TestBootTimeout(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "lifecycle", "workers 1", "boot_timeout 1s", "env LIFECYCLE_IMPORT_SLEEP 30", "queue_timeout 3s"))
	st := time.Now()
	fails := waitLogEntries(c, "worker failed to start", 2, 20*time.Second, nil)
	if len(fails) == 0 {
		t.Fatalf("no \"worker failed to start\" after an import of 30 s with boot_timeout 1s")
	}
	t.Logf("%d boot failures %v after start", len(fails), time.Since(st).Round(100*time.Millisecond))
	e := entryJSON(fails[0])
	if !strings.Contains(e, "boot_timeout") {
		t.Errorf("the boot failure does not mention boot_timeout: %s", e)
	}
	if !regexp.MustCompile(`lifecycle\.py\\?", line \d+ in slow_import`).MatchString(e) {
		t.Errorf("the boot failure does not include the stack of the import (slow_import in lifecycle.py): %s", e)
	}
	if fails[0]["level"] != "error" {
		t.Errorf("boot failure level %v, want error", fails[0]["level"])
	}
	if len(fails) < 2 {
		t.Errorf("the boot was not retried within 20 s")
	}
	if !c.waitLog("restarting worker after backoff", 5*time.Second) {
		t.Errorf("no \"restarting worker after backoff\"")
	}
	// the timed-out imports are killed: never more than one Python child at a time
	for i := 0; i < 10; i++ {
		if ps := c.WorkerPids(); len(ps) > 1 {
			t.Errorf("caddy has %d children %v: timed-out boots are not killed", len(ps), ps)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	resp, _ := get(t, c.URL+"/pid")
	if resp.StatusCode != 503 {
		t.Errorf("request to a pool whose boots time out: %d, want 503", resp.StatusCode)
	}
}

// ---------------------------------------------------------------------------------------------
// recycling

func TestMaxRequestsUnderLoad(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "lifecycle", "workers 2", "threads 1", "max_requests 10", "max_requests_jitter 5"))
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	var mu sync.Mutex
	pids := map[int]int{}
	// a few ms per request, so that the 3000 requests span many worker boots
	stats := runLoad(loadConfig{URL: c.URL + "/sleep?s=0.005", Concurrency: 8, Duration: 100 * time.Second, MaxRequests: 3000,
		Observe: func(b []byte) {
			var d struct{ Pid int }
			if json.Unmarshal(b, &d) == nil {
				mu.Lock()
				pids[d.Pid]++
				mu.Unlock()
			}
		}})
	most := 0
	for _, n := range pids {
		most = max(most, n)
	}
	t.Logf("max_requests 10 (jitter 5), 2 workers: %s; %d distinct worker pids, the busiest served %d requests (it keeps serving until its replacement is ready)",
		stats, len(pids), most)
	if stats.Total < 3000 {
		t.Errorf("only %d of 3000 requests were made within the deadline", stats.Total)
	}
	if stats.Failed != 0 {
		t.Errorf("%d of %d requests failed while workers recycled (want 0):\n%s", stats.Failed, stats.Total, stats.Failures())
	}
	if len(pids) < 20 {
		t.Errorf("%d distinct worker pids over %d requests with max_requests 10, want many (>= 20)", len(pids), stats.Total)
	}
	n := 0
	for _, e := range logEntries(c, "recycling worker") {
		if e["reason"] == "max_requests" {
			n++
			if entryInt(e, "pid") == 0 || entryInt(e, "new_pid") == 0 {
				t.Errorf("recycling entry without pid/new_pid: %s", entryJSON(e))
				break
			}
		}
	}
	if n < len(pids)-3 {
		t.Errorf("%d \"recycling worker\" entries with reason max_requests for %d distinct workers", n, len(pids))
	}
	time.Sleep(500 * time.Millisecond)
	if ps := c.WorkerPids(); len(ps) != 2 {
		time.Sleep(3 * time.Second)
		if ps = c.WorkerPids(); len(ps) != 2 {
			t.Errorf("after the load caddy has %d children %v, want 2", len(ps), ps)
		}
	}
}

func TestMaxLifetime(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "lifecycle", "workers 1", "threads 1", "max_lifetime 2s"))
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	var mu sync.Mutex
	var seq []int
	stats := runLoad(loadConfig{URL: c.URL + "/sleep?s=0.05", Concurrency: 2, Duration: 7 * time.Second, MaxRequests: 5000,
		Observe: func(b []byte) {
			var d struct{ Pid int }
			if json.Unmarshal(b, &d) == nil {
				mu.Lock()
				if len(seq) == 0 || seq[len(seq)-1] != d.Pid {
					seq = append(seq, d.Pid)
				}
				mu.Unlock()
			}
		}})
	distinct := map[int]bool{}
	for _, p := range seq {
		distinct[p] = true
	}
	t.Logf("max_lifetime 2s over 7 s: %s; pids in order %v", stats, seq)
	if len(distinct) < 3 {
		t.Errorf("%d distinct pids over 7 s with max_lifetime 2s, want >= 3", len(distinct))
	}
	if stats.Failed != 0 {
		t.Errorf("%d of %d requests failed across lifetime recycling:\n%s", stats.Failed, stats.Total, stats.Failures())
	}
	n := 0
	for _, e := range logEntries(c, "recycling worker") {
		if e["reason"] == "max_lifetime" {
			n++
		}
	}
	if n < 2 {
		t.Errorf("%d \"recycling worker\" entries with reason max_lifetime, want >= 2", n)
	}
}

func TestMaxRSS(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "lifecycle", "workers 1", "threads 1", "max_rss 100MiB"))
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	_, b := get(t, c.URL+"/pid")
	first := pidOf(t, b)
	maxRSS := 0
	recycledAt := -1
	for i := 0; i < 20; i++ {
		resp, body := get(t, c.URL+"/grow?mb=20")
		if resp.StatusCode != 200 {
			t.Errorf("/grow #%d: %d %.200s", i, resp.StatusCode, body)
			continue
		}
		var d struct {
			Pid    int `json:"pid"`
			RSSKiB int `json:"rss_kib"`
		}
		json.Unmarshal(body, &d)
		maxRSS = max(maxRSS, d.RSSKiB)
		if d.Pid != first {
			recycledAt = i
			break
		}
		time.Sleep(400 * time.Millisecond)
	}
	t.Logf("worker %d grew to %d MiB; replaced at /grow #%d", first, maxRSS/1024, recycledAt)
	if recycledAt < 0 {
		t.Fatalf("the worker was never recycled although its RSS reached %d MiB with max_rss 100MiB", maxRSS/1024)
	}
	// recycled soon after crossing 100 MiB: at most ~one check period (1 s) of growth later
	if maxRSS > 220*1024 {
		t.Errorf("the worker reached %d MiB before it was recycled (max_rss 100MiB, checked every second)", maxRSS/1024)
	}
	ents := waitLogEntries(c, "recycling worker", 1, 5*time.Second, func(e map[string]any) bool { return e["reason"] == "max_rss" })
	if len(ents) == 0 {
		t.Errorf("no \"recycling worker\" entry with reason max_rss")
	} else if entryInt(ents[0], "pid") != first || entryInt(ents[0], "new_pid") == 0 {
		t.Errorf("recycling entry %s, want pid %d and a new_pid", entryJSON(ents[0]), first)
	}
	if alive := waitPidsGone([]int{first}, 10*time.Second); len(alive) > 0 {
		t.Errorf("the recycled worker %d is still alive", first)
	}
	for _, p := range c.WorkerPids() {
		if r := vmRSS(p); r > 80*1024 {
			t.Errorf("worker %d has %d MiB resident after the recycle", p, r/1024)
		}
	}
	if code, _, err := tryGet(c.URL+"/pid", 10*time.Second); code != 200 {
		t.Errorf("after the recycle: %d %v", code, err)
	}
}

// ---------------------------------------------------------------------------------------------
// hooks

func markerFiles(dir, prefix string) map[int]string {
	out := map[int]string{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, prefix+"-") || strings.Contains(n, ".tmp") {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(n, prefix+"-"))
		if err != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(dir, n))
		out[pid] = string(b)
	}
	return out
}

func waitMarkers(dir, prefix string, n int, timeout time.Duration) map[int]string {
	deadline := time.Now().Add(timeout)
	for {
		m := markerFiles(dir, prefix)
		if len(m) >= n || time.Now().After(deadline) {
			return m
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestHooks(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "lifecycle", "workers 1", "threads 1", "hooks hooks_markers", "max_requests 3"))
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	resp, body := get(t, c.URL+"/environ?k=HOOKS_PRE_REQUEST")
	var d struct {
		Pid   int     `json:"pid"`
		Value *string `json:"value"`
	}
	json.Unmarshal(body, &d)
	if resp.StatusCode != 200 || d.Value == nil || *d.Value != "set-by-hook" {
		t.Errorf("environ key set by pre_request: %d %s, want value set-by-hook", resp.StatusCode, body)
	}
	w := d.Pid
	for _, hook := range []string{"on_starting", "post_fork", "post_worker_init"} {
		m := waitMarkers(c.Dir, hook, 1, 5*time.Second)
		if _, ok := m[w]; !ok {
			t.Errorf("%s did not run in the worker %d (markers %v)", hook, w, m)
		}
	}
	for _, hook := range []string{"post_fork", "post_worker_init"} {
		if s, ok := markerFiles(c.Dir, hook)[w]; ok && !strings.HasSuffix(strings.TrimSpace(s), " "+strconv.Itoa(w)) {
			t.Errorf("%s(worker): worker.pid is not the worker's pid %d: marker %q (pid ppid worker.pid)", hook, w, s)
		}
	}
	// post_request sees the status
	time.Sleep(200 * time.Millisecond)
	pr := markerFiles(c.Dir, "post_request")[w]
	if !regexp.MustCompile(`(?m)^/environ (200|'?200 OK'?)\s*$`).MatchString(pr) {
		t.Errorf("post_request marker of worker %d = %q, want a line \"/environ 200\"", w, pr)
	}
	// max_requests 3: the worker is recycled gracefully and worker_exit runs in it
	for i := 0; i < 4; i++ {
		get(t, c.URL+"/pid")
	}
	ex := waitMarkers(c.Dir, "worker_exit", 1, 10*time.Second)
	if s, ok := ex[w]; !ok {
		t.Errorf("worker_exit did not run in the recycled worker %d (markers %v)", w, ex)
	} else if !strings.HasSuffix(strings.TrimSpace(s), " "+strconv.Itoa(w)) {
		t.Errorf("worker_exit(worker): worker.pid is not %d: %q", w, s)
	}
}

func TestHooksRaising(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "lifecycle", "workers 1", "threads 1", "hooks hooks_raising", "max_requests 3"))
	// every hook raises; the worker still starts and every request succeeds
	body := waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	for i := 0; i < 5; i++ {
		if code, b, err := tryGet(c.URL+"/pid", 10*time.Second); code != 200 {
			t.Errorf("request %d with raising hooks: %d %v %.200s, want 200", i, code, err, b)
		}
	}
	_ = body
	for _, hook := range []string{"on_starting", "post_fork", "post_worker_init", "pre_request", "post_request", "worker_exit"} {
		msg := "hook " + hook + " boom"
		if !c.waitLog(msg, 5*time.Second) {
			t.Errorf("the exception of hook %s is not in caddy's log (%q)", hook, msg)
			continue
		}
		lines := logLinesMatching(c, func(l string) bool { return strings.Contains(l, msg) })
		joined := strings.Join(lines, "\n")
		if !strings.Contains(joined, "Traceback") || !strings.Contains(joined, "hooks_raising.py") {
			t.Errorf("the log of hook %s's exception has no traceback: %.1000s", hook, joined)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// preload

func TestPreload(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "lifecycle", "workers 3", "threads 1", "preload", "hooks hooks_markers", "name lc-preload"))
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	p := waitPool(t, c, "lc-preload", 15*time.Second, "3 workers", func(p *wsgiPool) bool { return len(p.Workers) == 3 })
	workers := p.pids()

	imports := markerFiles(c.Dir, "import")
	if len(imports) != 1 {
		t.Errorf("the module was imported by %d processes %v, want exactly one (the preloading parent)", len(imports), imports)
	}
	zygote := 0
	for pid := range imports {
		zygote = pid
		if contains(workers, pid) {
			t.Errorf("the importing process %d is a worker (%v), not a preloading parent", pid, workers)
		}
	}
	for _, w := range workers {
		if ppid, _, ok := procStat(w); !ok || (zygote != 0 && ppid != zygote) {
			t.Errorf("worker %d has parent %d, want the preloading process %d", w, ppid, zygote)
		}
	}
	// the workers serve
	seen := map[int]bool{}
	var chans []<-chan asyncResult
	for i := 0; i < 3; i++ {
		chans = append(chans, goGet(c.URL+"/sleep?s=0.5", 20*time.Second))
	}
	for _, ch := range chans {
		r := awaitResult(t, ch, 20*time.Second, "sleep")
		if r.code != 200 {
			t.Errorf("preloaded worker request: %d %v", r.code, r.err)
			continue
		}
		seen[pidOf(t, r.body)] = true
	}
	for pid := range seen {
		if !contains(workers, pid) {
			t.Errorf("request served by pid %d, not one of the workers %v", pid, workers)
		}
	}
	// hooks: on_starting in the parent, post_fork in each worker
	if on := waitMarkers(c.Dir, "on_starting", 1, 5*time.Second); len(on) != 1 || (zygote != 0 && on[zygote] == "") {
		t.Errorf("on_starting markers %v, want one, from the preloading process %d", on, zygote)
	}
	pf := waitMarkers(c.Dir, "post_fork", 3, 5*time.Second)
	for _, w := range workers {
		if s, ok := pf[w]; !ok || !strings.HasSuffix(strings.TrimSpace(s), " "+strconv.Itoa(w)) {
			t.Errorf("post_fork in worker %d: %q (markers %v)", w, s, pf)
		}
	}

	// a killed worker is replaced quickly, by a fork (no new import)
	victim := workers[0]
	st := time.Now()
	syscall.Kill(victim, syscall.SIGKILL)
	after := waitPool(t, c, "lc-preload", 10*time.Second, "the killed worker replaced", func(p *wsgiPool) bool {
		return len(p.Workers) == 3 && !contains(p.pids(), victim)
	})
	el := time.Since(st)
	t.Logf("a killed preloaded worker was replaced in %v", el.Round(time.Millisecond))
	if el > 2*time.Second {
		t.Errorf("replacing a killed preloaded worker took %v, want < 2 s (a fork)", el)
	}
	if n := len(markerFiles(c.Dir, "import")); n != 1 {
		t.Errorf("after the replacement %d processes imported the module, want still 1", n)
	}
	for i := 0; i < 6; i++ {
		code, b, err := tryGet(c.URL+"/pid", 10*time.Second)
		if code != 200 {
			t.Errorf("after the replacement: %d %v", code, err)
			continue
		}
		if pid := pidOf(t, b); !contains(after.pids(), pid) {
			t.Errorf("served by %d, not a worker of %v", pid, after.pids())
		}
	}
}

// ---------------------------------------------------------------------------------------------
// preload measurement on the Django example

// smapsRollup returns Pss and USS (Private_Clean + Private_Dirty) of pid in KiB.
func smapsRollup(pid int) (pss, uss int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "Pss:":
			pss = v
		case "Private_Clean:", "Private_Dirty:":
			uss += v
		}
	}
	return pss, uss, nil
}

type djangoMem struct {
	pssKiB, ussKiB int
	bootMs         int     // admin scale request to the new worker's "worker ready" log entry
	bootField      float64 // that entry's boot field, in ms
}

func measureDjango(t *testing.T, preload bool) djangoMem {
	db, static, _ := djangoPrepare(t)
	name := "dj-nopreload"
	extra := ""
	if preload {
		name = "dj-preload"
		extra = "\t\tpreload\n"
	}
	c := startCaddy(t, withGlobal(`
http://127.0.0.1:{PORT} {
	wsgi mysite.wsgi:application {
		venv {VENV}
		chdir {REPO}/examples/django
		workers 4
		name `+name+`
`+extra+`		env DJANGO_DB_PATH `+fwQuote(db)+`
		env DJANGO_STATIC_ROOT `+fwQuote(static)+`
		env DJANGO_SECRET_KEY django-test-secret-key-for-caddy-wsgi-integration-tests-0123456789
		env DJANGO_ALLOWED_HOSTS 127.0.0.1,localhost
		env DJANGO_DEBUG 0
	}
}
`))
	waitStatus(t, c.URL+"/info/", 200, 90*time.Second)
	p := waitPool(t, c, name, 60*time.Second, "4 workers", func(p *wsgiPool) bool { return len(p.Workers) == 4 })
	// warm every worker the same way: concurrent requests so each serves some
	stats := runLoad(loadConfig{URL: c.URL + "/info/", Concurrency: 4, Duration: 20 * time.Second, MaxRequests: 200})
	if stats.Failed != 0 {
		t.Errorf("%s warm-up: %s\n%s", name, stats, stats.Failures())
	}
	time.Sleep(300 * time.Millisecond)
	var m djangoMem
	for _, pid := range p.pids() {
		pss, uss, err := smapsRollup(pid)
		if err != nil {
			t.Fatalf("%s: smaps_rollup of worker %d: %v", name, pid, err)
		}
		m.pssKiB += pss
		m.ussKiB += uss
	}
	// worker start: scale 4 -> 5, until the new worker's "worker ready" entry
	readyBefore := len(logEntries(c, "worker ready"))
	st := time.Now()
	code, b, err := adminDo(c, "POST", "/wsgi/pools/"+name+"/scale", []byte(`{"workers": 5}`))
	if code != 200 {
		t.Errorf("%s: scale to 5: %d %v %.300s", name, code, err, b)
		return m
	}
	ents := waitLogEntries(c, "worker ready", readyBefore+1, 60*time.Second, nil)
	if len(ents) <= readyBefore {
		t.Errorf("%s: no new \"worker ready\" within 60 s of scaling up", name)
		return m
	}
	m.bootMs = int(time.Since(st).Milliseconds())
	if v, ok := entrySeconds(ents[len(ents)-1], "boot"); ok {
		m.bootField = v * 1000
	}
	newPid := entryInt(ents[len(ents)-1], "pid")
	waitPool(t, c, name, 10*time.Second, "5 workers", func(p *wsgiPool) bool { return len(p.Workers) == 5 })
	// the new worker serves
	served := false
	for i := 0; i < 30 && !served; i++ {
		if code, b, _ := tryGet(c.URL+"/info/", 10*time.Second); code == 200 && strings.Contains(string(b), strconv.Itoa(newPid)) {
			served = true
		}
	}
	if !served {
		t.Errorf("%s: the worker %d added by scaling up served none of 30 requests", name, newPid)
	}
	t.Logf("%s: 4 workers PSS %d MiB USS %d MiB; new worker %d ready %d ms after the scale request (boot field %.0f ms)",
		name, m.pssKiB/1024, m.ussKiB/1024, newPid, m.bootMs, m.bootField)
	return m
}

// TestPreloadDjangoMemory compares 4 Django workers with and without preload. Not parallel,
// so that the start times are measured on a quiet machine.
func TestPreloadDjangoMemory(t *testing.T) {
	nopre := measureDjango(t, false)
	pre := measureDjango(t, true)
	t.Logf("FIGURE preload_pss_saved_mib=%d", (nopre.pssKiB-pre.pssKiB)/1024)
	t.Logf("FIGURE worker_boot_ms_nopreload=%d", nopre.bootMs)
	t.Logf("FIGURE worker_boot_ms_preload=%d", pre.bootMs)
	t.Logf("without preload: PSS %d KiB USS %d KiB boot field %.0f ms; with preload: PSS %d KiB USS %d KiB boot field %.0f ms",
		nopre.pssKiB, nopre.ussKiB, nopre.bootField, pre.pssKiB, pre.ussKiB, pre.bootField)
	if pre.ussKiB == 0 || nopre.ussKiB == 0 {
		t.Fatalf("no USS measured (preload %d KiB, without %d KiB)", pre.ussKiB, nopre.ussKiB)
	}
	if pre.ussKiB >= nopre.ussKiB {
		t.Errorf("summed USS of 4 workers with preload %d KiB, without %d KiB: want lower with preload", pre.ussKiB, nopre.ussKiB)
	}
	if pre.bootMs > 0 && nopre.bootMs > 0 && pre.bootMs >= nopre.bootMs {
		t.Errorf("a preloaded worker started in %d ms, not faster than without preload (%d ms)", pre.bootMs, nopre.bootMs)
	}
}
