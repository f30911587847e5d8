//go:build linux

package integration

// The admin API of the wsgi pools (/wsgi/pools under Caddy's admin endpoint): listing with
// per-worker activity, rolling restart under load, scaling, pool names, and autoscaling.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var adminClient = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{Proxy: nil}}

// poolByName returns the serving pool called name (nil if none).
func poolByName(ps []wsgiPool, name string) *wsgiPool {
	var found *wsgiPool
	for i := range ps {
		if ps[i].Name == name {
			if found == nil || ps[i].State == "serving" {
				found = &ps[i]
			}
		}
	}
	return found
}

func poolJSON(p *wsgiPool) string {
	b, _ := json.Marshal(p)
	return string(b)
}

// ---------------------------------------------------------------------------------------------

func TestAdminPoolsListing(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	wsgi lifecycle {
		python {PYTHON}
		chdir {APPS}
		env MARKER_DIR {TMP}
		workers 2
		threads 1
		name lc-listing
	}
}
http://localhost:{PORT} {
	wsgi lifecycle:application {
		python {PYTHON}
		chdir {APPS}
		workers 1
		threads 2
	}
}
`)
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	p := waitPool(t, c, "lc-listing", 15*time.Second, "2 workers", func(p *wsgiPool) bool { return len(p.Workers) == 2 })
	if p.App != "lifecycle" || p.State != "serving" || p.WorkersWanted != 2 || p.Threads != 1 || p.Failing {
		t.Errorf("idle pool: app %q state %q workers_wanted %d threads %d failing %v, want lifecycle serving 2 1 false; %s",
			p.App, p.State, p.WorkersWanted, p.Threads, p.Failing, poolJSON(p))
	}
	if p.Restarts == nil {
		t.Errorf("pool JSON has no restarts object: %s", poolJSON(p))
	}
	if p.Lifecycle != "ready" {
		t.Errorf("idle pool: lifecycle %q, want ready", p.Lifecycle)
	}
	// default name: the app spec
	if d := poolByName(mustPools(t, c), "lifecycle:application"); d == nil {
		t.Errorf("the pool without `name` is not listed under its app spec %q: %v", "lifecycle:application", mustPools(t, c))
	} else if d.Threads != 2 || d.WorkersWanted != 1 {
		t.Errorf("default-named pool: threads %d workers_wanted %d, want 2 1", d.Threads, d.WorkersWanted)
	}
	for _, pid := range p.pids() {
		if !contains(c.WorkerPids(), pid) {
			t.Errorf("admin pid %d is not a child of caddy %v", pid, c.WorkerPids())
		}
	}

	// a slow request: its worker is busy with it
	id := token("adm")
	slow := goGet(c.URL+"/sleep?s=4&id="+id, 30*time.Second)
	busyPid := readPidMarker(t, c, id)
	time.Sleep(1200 * time.Millisecond)
	p = mustPool(t, c, "lc-listing")
	if p.BusyThreads != 1 || p.QueueDepth != 0 {
		t.Errorf("busy_threads %d queue_depth %d, want 1 0", p.BusyThreads, p.QueueDepth)
	}
	var found bool
	for _, w := range p.Workers {
		if w.RSSBytes < 2<<20 || w.RSSBytes > 1<<30 {
			t.Errorf("worker %d rss_bytes %d, want a plausible RSS (VmRSS says %d KiB)", w.Pid, w.RSSBytes, vmRSS(w.Pid))
		}
		if len(w.Started) == 0 || string(w.Started) == "null" {
			t.Errorf("worker %d has no started", w.Pid)
		}
		if w.Pid != busyPid {
			if w.State != "idle" || w.Lifecycle != "ready" || w.BusyThreads != 0 || len(w.Current) != 0 {
				t.Errorf("the other worker %d: state %q lifecycle %q busy_threads %d current %v, want idle ready 0 []", w.Pid, w.State, w.Lifecycle, w.BusyThreads, w.Current)
			}
			continue
		}
		found = true
		if w.State != "busy" || w.Lifecycle != "busy" || w.BusyThreads != 1 || len(w.Current) != 1 {
			t.Errorf("busy worker %d: state %q lifecycle %q busy_threads %d current %+v, want busy busy 1 and one current request", w.Pid, w.State, w.Lifecycle, w.BusyThreads, w.Current)
			continue
		}
		cur := w.Current[0]
		if !strings.HasPrefix(cur.Request, "GET /sleep") || !strings.Contains(cur.Request, id) {
			t.Errorf("current request %q, want \"GET /sleep?s=4&id=%s\"", cur.Request, id)
		}
		if cur.AgeSeconds < 1.0 || cur.AgeSeconds > 4 {
			t.Errorf("current request age_seconds %.3f, want ~1.2", cur.AgeSeconds)
		}
	}
	if !found {
		t.Errorf("the worker %d running the slow request is not listed: %s", busyPid, poolJSON(p))
	}
	r := awaitResult(t, slow, 30*time.Second, "slow request")
	if r.code != 200 {
		t.Errorf("slow request: %d %v", r.code, r.err)
	}
	// once done: idle again, and the request counted
	p = waitPool(t, c, "lc-listing", 5*time.Second, "idle", func(p *wsgiPool) bool { return p.BusyThreads == 0 })
	var total int64
	for _, w := range p.Workers {
		total += w.Requests
		if w.State != "idle" || len(w.Current) != 0 {
			t.Errorf("after the request: worker %d state %q current %v", w.Pid, w.State, w.Current)
		}
	}
	if total < 2 {
		t.Errorf("workers' requests sum to %d after at least 2 requests", total)
	}
}

func TestAdminRestartUnderLoad(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "lifecycle", "workers 2", "threads 1", "name lc-restart"))
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	before := waitPool(t, c, "lc-restart", 15*time.Second, "2 workers", func(p *wsgiPool) bool { return len(p.Workers) == 2 }).pids()

	load := startLoad(loadConfig{URL: c.URL + "/sleep?s=0.01", Concurrency: 4, Duration: 40 * time.Second, MaxRequests: 20000})
	time.Sleep(500 * time.Millisecond)
	st := time.Now()
	code, body, err := adminDo(c, "POST", "/wsgi/pools/lc-restart/restart", nil)
	took := time.Since(st)
	time.Sleep(500 * time.Millisecond)
	stats := load.Stop()
	t.Logf("restart took %v; load: %s", took.Round(time.Millisecond), stats)
	if err != nil || code != 200 {
		t.Fatalf("POST /wsgi/pools/lc-restart/restart: %d %v %.500s", code, err, body)
	}
	var res struct {
		Restarted *int `json:"restarted"`
	}
	if err := json.Unmarshal(body, &res); err != nil || res.Restarted == nil || *res.Restarted != 2 {
		t.Errorf("restart answer %q, want {\"restarted\": 2}", body)
	}
	if stats.Failed != 0 || stats.Total < 50 {
		t.Errorf("rolling restart under load: %d of %d requests failed (want 0 of a non-trivial number):\n%s", stats.Failed, stats.Total, stats.Failures())
	}
	p := mustPool(t, c, "lc-restart")
	after := p.pids()
	if len(after) != 2 {
		t.Errorf("after the restart the pool has workers %v, want 2", after)
	}
	for _, pid := range after {
		if contains(before, pid) {
			t.Errorf("worker %d survived the restart (before %v after %v)", pid, before, after)
		}
	}
	if alive := waitPidsGone(before, 10*time.Second); len(alive) > 0 {
		t.Errorf("old workers %v still running 10 s after the restart", alive)
	}
	if p.Restarts["restart"] != 2 {
		t.Errorf("restarts %v, want restart: 2", p.Restarts)
	}
	lines := logLinesMatching(c, func(l string) bool {
		return strings.Contains(l, "recycling worker") && strings.Contains(l, `"reason":"restart"`)
	})
	if len(lines) != 2 {
		t.Errorf("%d \"recycling worker\" log entries with reason restart, want 2:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	// unknown pool
	if code, body, _ := adminDo(c, "POST", "/wsgi/pools/no-such-pool/restart", nil); code != 404 {
		t.Errorf("restart of an unknown pool: %d %.200s, want 404", code, body)
	}
}

func TestAdminScale(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "lifecycle", "workers 1", "threads 1", "name lc-scale"))
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	waitPool(t, c, "lc-scale", 15*time.Second, "1 worker", func(p *wsgiPool) bool { return len(p.Workers) == 1 })

	scale := func(body string) (int, []byte) {
		t.Helper()
		code, b, err := adminDo(c, "POST", "/wsgi/pools/lc-scale/scale", []byte(body))
		if err != nil {
			t.Fatalf("POST scale %s: %v", body, err)
		}
		return code, b
	}
	code, b := scale(`{"workers": 3}`)
	if code != 200 {
		t.Fatalf("scale to 3: %d %.500s", code, b)
	}
	var p wsgiPool
	if err := json.Unmarshal(b, &p); err != nil || p.Name != "lc-scale" || p.WorkersWanted != 3 {
		t.Errorf("scale answer %.500s, want the pool JSON with workers_wanted 3 (%v)", b, err)
	}
	p3 := waitPool(t, c, "lc-scale", 15*time.Second, "3 workers", func(p *wsgiPool) bool { return len(p.Workers) == 3 })
	if len(c.WorkerPids()) != 3 {
		t.Errorf("caddy has children %v with 3 workers wanted", c.WorkerPids())
	}
	// three single-threaded workers serve three slow requests at once
	var chans []<-chan asyncResult
	st := time.Now()
	for i := 0; i < 3; i++ {
		chans = append(chans, goGet(c.URL+"/sleep?s=1", 20*time.Second))
	}
	seen := map[int]bool{}
	for _, ch := range chans {
		r := awaitResult(t, ch, 20*time.Second, "sleep")
		if r.code != 200 {
			t.Errorf("sleep on 3 workers: %d %v", r.code, r.err)
			continue
		}
		seen[pidOf(t, r.body)] = true
	}
	if el := time.Since(st); len(seen) != 3 || el > 2500*time.Millisecond {
		t.Errorf("3 concurrent 1 s requests took %v on pids %v, want 3 workers in parallel", el, seen)
	}

	code, b = scale(`{"workers": 1}`)
	if code != 200 {
		t.Fatalf("scale to 1: %d %.500s", code, b)
	}
	p1 := waitPool(t, c, "lc-scale", 15*time.Second, "1 worker", func(p *wsgiPool) bool { return len(p.Workers) == 1 && p.WorkersWanted == 1 })
	var gone []int
	for _, pid := range p3.pids() {
		if !contains(p1.pids(), pid) {
			gone = append(gone, pid)
		}
	}
	if alive := waitPidsGone(gone, 10*time.Second); len(alive) > 0 {
		t.Errorf("scaled-down workers %v still running", alive)
	}
	if code, b, err := tryGet(c.URL+"/pid", 10*time.Second); code != 200 {
		t.Errorf("after scaling down: %d %v %.200s", code, err, b)
	}

	for _, bad := range []string{`{"workers": -1}`, `{"workers": "three"}`, `{"workers": 1.5}`, `{}`, `not json`} {
		if code, b := scale(bad); code != 400 {
			t.Errorf("scale with %s: %d %.200s, want 400", bad, code, b)
		}
	}
	if code, b, _ := adminDo(c, "POST", "/wsgi/pools/no-such-pool/scale", []byte(`{"workers": 2}`)); code != 404 {
		t.Errorf("scale of an unknown pool: %d %.200s, want 404", code, b)
	}
	if p := mustPool(t, c, "lc-scale"); len(p.Workers) != 1 {
		t.Errorf("after the bad scale requests the pool has %d workers, want 1", len(p.Workers))
	}
}

// TestAutoscale: `workers 1 3` adds workers when requests wait in the queue and retires idle
// ones after idle_timeout. Not parallel: the scale-up depends on the CPU being available.
func TestAutoscale(t *testing.T) {
	c := startCaddy(t, wsgiSite(localSite, "lifecycle", "workers 1 3", "threads 1", "idle_timeout 2s", "name lc-auto"))
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	p := waitPool(t, c, "lc-auto", 15*time.Second, "1 worker", func(p *wsgiPool) bool { return len(p.Workers) >= 1 })
	if len(p.Workers) != 1 || p.WorkersWanted != 1 {
		t.Errorf("idle autoscaled pool at start: %d workers, workers_wanted %d, want 1 1", len(p.Workers), p.WorkersWanted)
	}

	load := startLoad(loadConfig{URL: c.URL + "/sleep?s=0.3", Concurrency: 8, Duration: 12 * time.Second, MaxRequests: 1000})
	maxWorkers, maxWanted := 0, 0
	deadline := time.Now().Add(12 * time.Second)
	for time.Now().Before(deadline) {
		if ps, err := listPools(c); err == nil {
			if p := poolByName(ps, "lc-auto"); p != nil {
				maxWorkers = max(maxWorkers, len(p.Workers))
				maxWanted = max(maxWanted, p.WorkersWanted)
			}
		}
		if maxWorkers >= 3 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stats := load.Stop()
	t.Logf("under load: up to %d workers (workers_wanted up to %d); %s", maxWorkers, maxWanted, stats)
	if maxWorkers <= 1 {
		t.Errorf("requests queued behind one worker (8 concurrent 0.3 s requests) but the pool never grew beyond 1 worker (workers_wanted up to %d)", maxWanted)
	}
	if maxWorkers > 3 || maxWanted > 3 {
		t.Errorf("the pool grew to %d workers (wanted %d), beyond max 3", maxWorkers, maxWanted)
	}
	if stats.Failed != 0 {
		t.Errorf("%d of %d requests failed while scaling up:\n%s", stats.Failed, stats.Total, stats.Failures())
	}
	up := logLinesMatching(c, func(l string) bool { return strings.Contains(l, `"scaling up"`) })
	if len(up) == 0 {
		t.Errorf("no \"scaling up\" log entry")
	} else if !strings.Contains(up[0], `"workers":`) {
		t.Errorf("\"scaling up\" entry without a workers field: %s", up[0])
	}

	// idle: back to one worker after idle_timeout (2 s)
	st := time.Now()
	waitPool(t, c, "lc-auto", 15*time.Second, "back to 1 worker", func(p *wsgiPool) bool { return len(p.Workers) == 1 && p.WorkersWanted == 1 })
	t.Logf("back to 1 worker %v after the load stopped", time.Since(st).Round(100*time.Millisecond))
	if !c.waitLog(`"scaling down"`, 2*time.Second) {
		t.Errorf("no \"scaling down\" log entry")
	} else if down := logLinesMatching(c, func(l string) bool { return strings.Contains(l, `"scaling down"`) }); !strings.Contains(down[len(down)-1], `"workers":1`) {
		t.Errorf("last \"scaling down\" entry does not say workers 1: %s", down[len(down)-1])
	}
	if n := len(c.WorkerPids()); n != 1 {
		// a retired worker may take a moment to exit
		time.Sleep(2 * time.Second)
		if n = len(c.WorkerPids()); n != 1 {
			t.Errorf("caddy has %d children after scaling down, want 1", n)
		}
	}
	if code, _, err := tryGet(c.URL+"/pid", 10*time.Second); code != 200 {
		t.Errorf("after scaling down: %d %v", code, err)
	}
}

// TestWSGIRestartCommand: `caddy wsgi-restart` deploys new code (all pools, or --pool);
// new code that fails to import leaves the old workers serving and the command exits
// non-zero with the traceback's last line.
func TestWSGIRestartCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	app := filepath.Join(dir, "deployed.py")
	write := func(src string) {
		if err := os.WriteFile(app, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	version := func(v string) string {
		return "def application(environ, start_response):\n" +
			"    start_response('200 OK', [('Content-Type', 'text/plain')])\n" +
			"    return [b'" + v + "']\n"
	}
	write(version("v1"))
	c := startCaddy(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	wsgi deployed {
		python {PYTHON}
		chdir `+dir+`
		workers 2
	}
}
`)
	waitStatus(t, c.URL+"/", 200, 20*time.Second)
	serving := func() string {
		code, body := rawExchange(t, c.Port, fmt.Sprintf("GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", c.Port), false)
		if code != http.StatusOK {
			t.Fatalf("GET /: %d %s", code, body)
		}
		return body
	}
	if got := serving(); got != "v1" {
		t.Fatalf("serving %q, want v1", got)
	}
	write(version("v2-new")) // another size: a .pyc of the same second and size is not stale
	out, err := runCaddyCmd(t, c.Dir, "wsgi-restart", "--address", c.Admin)
	if err != nil || !strings.Contains(out, "deployed: 2 workers restarted") {
		t.Fatalf("caddy wsgi-restart: %v\n%s", err, out)
	}
	for i := 0; i < 4; i++ {
		if got := serving(); got != "v2-new" {
			t.Fatalf("after wsgi-restart serving %q, want v2-new", got)
		}
	}
	write("raise RuntimeError('broken deploy 14')\n")
	out, err = runCaddyCmd(t, c.Dir, "wsgi-restart", "--pool", "deployed", "--address", c.Admin)
	if err == nil {
		t.Errorf("wsgi-restart of code that cannot import exited 0:\n%s", out)
	} else if !strings.Contains(out, "RuntimeError: broken deploy 14") {
		t.Errorf("wsgi-restart failed (%v) without the traceback's last line:\n%s", err, out)
	}
	for i := 0; i < 4; i++ {
		if got := serving(); got != "v2-new" {
			t.Fatalf("after a failed wsgi-restart serving %q, want the old workers' v2-new", got)
		}
	}
	if out, err := runCaddyCmd(t, c.Dir, "wsgi-restart", "--pool", "nope", "--address", c.Admin); err == nil {
		t.Errorf("wsgi-restart --pool nope exited 0:\n%s", out)
	}
}
