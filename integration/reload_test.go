//go:build linux

package integration

// Config reloads (`caddy reload`, POST /load) with wsgi pools: unchanged blocks keep their
// workers, changed blocks start a new pool that is ready before the old one stops taking
// requests, a config whose app fails to import is rejected; and the dev `reload` option.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type pidInfo struct {
	Pid     int    `json:"pid"`
	Version string `json:"version"`
	Tag     string `json:"tag"`
}

func parsePidInfo(b []byte) (pidInfo, error) {
	var d pidInfo
	err := json.Unmarshal(b, &d)
	if err == nil && d.Pid == 0 {
		err = fmt.Errorf("no pid in %q", b)
	}
	return d, err
}

func mustPidInfo(t *testing.T, url string) pidInfo {
	t.Helper()
	code, b, err := tryGet(url, 20*time.Second)
	if err != nil || code != 200 {
		t.Fatalf("GET %s: %d %v %.300s", url, code, err, b)
	}
	d, err := parsePidInfo(b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// lifecycleCaddyfile is a Caddyfile serving the lifecycle app with LIFECYCLE_TAG=tag, and a
// /ping route answering ping.
func lifecycleCaddyfile(tag, ping string, opts ...string) string {
	var b strings.Builder
	b.WriteString(globalBlock())
	b.WriteString("http://127.0.0.1:{PORT} {\n\trespond /ping \"" + ping + "\"\n")
	b.WriteString("\twsgi lifecycle {\n\t\tpython {PYTHON}\n\t\tchdir {APPS}\n\t\tenv MARKER_DIR {TMP}\n\t\tname lc\n")
	b.WriteString("\t\tenv LIFECYCLE_TAG " + tag + "\n")
	for _, o := range opts {
		b.WriteString("\t\t" + o + "\n")
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// adaptJSON writes the Caddyfile (placeholders expanded) next to caddy's and adapts it.
func adaptJSON(t *testing.T, c *Caddy, name, caddyfile string) []byte {
	t.Helper()
	path := filepath.Join(c.Dir, name)
	if err := os.WriteFile(path, []byte(c.expandPlaceholders(t, caddyfile)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runCaddyCmd(t, c.Dir, "adapt", "--config", path, "--adapter", "caddyfile")
	if err != nil {
		t.Fatalf("caddy adapt %s: %v\n%s", name, err, out)
	}
	// adapt may print warnings on stderr around the JSON
	i, j := strings.Index(out, "{"), strings.LastIndex(out, "}")
	if i < 0 || j < i {
		t.Fatalf("caddy adapt printed no JSON: %s", out)
	}
	js := []byte(out[i : j+1])
	if !json.Valid(js) {
		t.Fatalf("caddy adapt output is not JSON: %s", out)
	}
	return js
}

// loadJSON posts a config to /load and returns the status, body and duration.
func loadJSON(c *Caddy, cfg []byte) (int, string, time.Duration) {
	st := time.Now()
	code, b, err := adminDo(c, "POST", "/load", cfg)
	if err != nil {
		return 0, err.Error(), time.Since(st)
	}
	return code, string(b), time.Since(st)
}

// ---------------------------------------------------------------------------------------------

func TestReloadUnchangedKeepsPool(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, lifecycleCaddyfile("same", "one", "workers 2"))
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	before := waitPool(t, c, "lc", 15*time.Second, "2 workers", func(p *wsgiPool) bool { return len(p.Workers) == 2 }).pids()

	load := startLoad(loadConfig{URL: c.URL + "/pid", Concurrency: 2, Duration: 30 * time.Second, MaxRequests: 20000})
	for i, ping := range []string{"two", "three", "four"} {
		out, err := caddyReload(t, c, fmt.Sprintf("Caddyfile.%d", i), lifecycleCaddyfile("same", ping, "workers 2"))
		if err != nil {
			t.Fatalf("caddy reload: %v\n%s", err, out)
		}
		if _, b := get(t, c.URL+"/ping"); string(b) != ping {
			t.Errorf("reload not applied: /ping %q, want %q", b, ping)
		}
	}
	time.Sleep(300 * time.Millisecond)
	stats := load.Stop()
	t.Logf("load across 3 reloads with an unchanged wsgi block: %s", stats)
	if stats.Failed != 0 {
		t.Errorf("%d of %d requests failed across reloads that keep the pool:\n%s", stats.Failed, stats.Total, stats.Failures())
	}
	after := mustPool(t, c, "lc").pids()
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("an unchanged wsgi block got new workers on reload: %v -> %v", before, after)
	}
	if ps := c.WorkerPids(); fmt.Sprint(ps) != fmt.Sprint(before) {
		t.Errorf("caddy's children %v, want the kept workers %v", ps, before)
	}
	if n := len(logEntries(c, "recycling worker")); n != 0 {
		t.Errorf("%d \"recycling worker\" entries on reloads that do not change the pool", n)
	}
}

func TestReloadUnderLoad(t *testing.T) {
	t.Parallel()
	opts := []string{"workers 2", "graceful_timeout 5s"}
	c := startCaddy(t, lifecycleCaddyfile("A", "ping", opts...))
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	cfgs := map[string][]byte{
		"A": adaptJSON(t, c, "A.caddyfile", lifecycleCaddyfile("A", "ping", opts...)),
		"B": adaptJSON(t, c, "B.caddyfile", lifecycleCaddyfile("B", "ping", opts...)),
	}
	var mu sync.Mutex
	tags := map[string]int{}
	load := startLoad(loadConfig{URL: c.URL + "/sleep?s=0.02", Concurrency: 4, Duration: 100 * time.Second, MaxRequests: 100000,
		Observe: func(b []byte) {
			if d, err := parsePidInfo(b); err == nil {
				mu.Lock()
				tags[d.Tag]++
				mu.Unlock()
			}
		}})
	time.Sleep(300 * time.Millisecond)
	const reloads = 20
	var durations []time.Duration
	stale := 0
	for i := 0; i < reloads; i++ {
		tag := "B"
		if i%2 == 1 {
			tag = "A"
		}
		code, body, d := loadJSON(c, cfgs[tag])
		durations = append(durations, d.Round(time.Millisecond))
		if code != 200 {
			load.Stop()
			t.Fatalf("reload %d (to %s): POST /load: %d %s", i, tag, code, body)
		}
		// the new pool serves as soon as the reload returns
		if got := mustPidInfo(t, c.URL+"/pid"); got.Tag != tag {
			stale++
			t.Errorf("reload %d: the first request after POST /load returned was served with tag %q (pid %d), want %q", i, got.Tag, got.Pid, tag)
		}
		time.Sleep(150 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	stats := load.Stop()
	t.Logf("FIGURE reload_failed_requests=%d total=%d", stats.Failed, stats.Total)
	t.Logf("%d reloads under load: %s; tags served %v; POST /load durations %v", reloads, stats, tags, durations)
	if stats.Failed != 0 {
		t.Errorf("%d of %d requests failed across %d reloads:\n%s", stats.Failed, stats.Total, reloads, stats.Failures())
	}
	if tags["A"] == 0 || tags["B"] == 0 {
		t.Errorf("tags served %v: want both configs to have served", tags)
	}
	if got := mustPidInfo(t, c.URL+"/pid"); got.Tag != "A" {
		t.Errorf("after the last reload (to A) the app says tag %q", got.Tag)
	}
	// only the last pool remains: listed once, 2 workers, old processes gone
	p := waitPool(t, c, "lc", 15*time.Second, "only the final pool", func(p *wsgiPool) bool { return len(p.Workers) == 2 })
	deadline := time.Now().Add(15 * time.Second)
	for {
		ps := c.WorkerPids()
		if len(ps) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("15 s after the last reload caddy still has %d children %v (the final pool is %v): old pools did not stop", len(ps), ps, p.pids())
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ps := mustPools(t, c); len(ps) != 1 {
		t.Errorf("GET /wsgi/pools lists %d pools after the reloads, want 1: %+v", len(ps), ps)
	}
}

func TestReloadDrainsOldPool(t *testing.T) {
	t.Parallel()
	opts := []string{"workers 2", "threads 1", "graceful_timeout 2s"}
	c := startCaddy(t, lifecycleCaddyfile("A", "ping", opts...))
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	oldPids := waitPool(t, c, "lc", 15*time.Second, "2 workers", func(p *wsgiPool) bool { return len(p.Workers) == 2 }).pids()
	cfgB := adaptJSON(t, c, "B.caddyfile", lifecycleCaddyfile("B", "ping", opts...))

	idShort, idLong := token("short"), token("long")
	short := goGet(c.URL+"/sleep?s=1.5&id="+idShort, 30*time.Second)
	longStart := time.Now()
	long := goGet(c.URL+"/sleep?s=30&id="+idLong, 40*time.Second)
	shortPid, longPid := readPidMarker(t, c, idShort), readPidMarker(t, c, idLong)

	reloadAt := time.Now()
	reloaded := make(chan string, 1)
	go func() {
		code, body, d := loadJSON(c, cfgB)
		reloaded <- fmt.Sprintf("%d %s (%v)", code, body, d.Round(time.Millisecond))
	}()
	// the new pool takes requests while the old one drains (a request that reached the old
	// config before the switch waits there behind the busy workers: poll with short requests)
	var first pidInfo
	deadline := reloadAt.Add(10 * time.Second)
	for {
		code, b, err := tryGet(c.URL+"/pid", 250*time.Millisecond)
		if err == nil && code == 200 {
			if d, err := parsePidInfo(b); err == nil && d.Tag == "B" {
				first = d
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no request served by the new config (tag B) within 10 s of the reload")
		}
		time.Sleep(50 * time.Millisecond)
	}
	newAfter := time.Since(reloadAt)
	t.Logf("the new pool (pid %d) served %v after the reload started", first.Pid, newAfter.Round(time.Millisecond))
	if contains(oldPids, first.Pid) {
		t.Errorf("tag B served by an old worker %d", first.Pid)
	}
	if newAfter > 1400*time.Millisecond {
		t.Errorf("the new pool served only %v after the reload began: it should not wait for the old pool to drain", newAfter)
	}

	// meanwhile the admin API lists the old pool as draining, next to the new one serving
	if ps, err := listPools(c); err != nil {
		t.Errorf("GET /wsgi/pools during the drain: %v", err)
	} else {
		var serving, draining []wsgiPool
		for _, p := range ps {
			if p.Name != "lc" {
				continue
			}
			switch p.State {
			case "serving":
				serving = append(serving, p)
			case "draining":
				draining = append(draining, p)
			}
		}
		if len(serving) != 1 || len(draining) != 1 {
			t.Errorf("during the drain GET /wsgi/pools lists %d serving and %d draining pools named lc, want 1 and 1: %+v", len(serving), len(draining), ps)
		} else {
			for _, pid := range draining[0].pids() {
				if !contains(oldPids, pid) {
					t.Errorf("the draining pool lists worker %d, not one of the old workers %v", pid, oldPids)
				}
			}
			if contains(serving[0].pids(), shortPid) || contains(serving[0].pids(), longPid) {
				t.Errorf("the serving pool lists old workers: %v (old %v)", serving[0].pids(), oldPids)
			}
		}
	}

	r := awaitResult(t, short, 30*time.Second, "request in flight in the old pool")
	if r.code != 200 {
		t.Errorf("a 1.5 s request in flight during the reload (graceful_timeout 2s): %d %v, want 200", r.code, r.err)
	} else if d, _ := parsePidInfo(r.body); d.Pid != shortPid || d.Tag != "A" {
		t.Errorf("in-flight request answered by pid %d tag %q, want old worker %d tag A", d.Pid, d.Tag, shortPid)
	}
	// the old pool is gone within graceful_timeout (2 s, plus 1.5 s of slack), even with the
	// 30 s request still running
	alive := waitPidsGone(oldPids, 3500*time.Millisecond-time.Since(reloadAt))
	if len(alive) > 0 {
		t.Errorf("old workers %v still alive %v after the reload began (graceful_timeout 2s)", alive, time.Since(reloadAt).Round(time.Millisecond))
		waitPidsGone(oldPids, 15*time.Second)
		t.Logf("the old workers were gone %v after the reload began", time.Since(reloadAt).Round(100*time.Millisecond))
	}
	lr := awaitResult(t, long, 20*time.Second, "the 30 s request")
	endedAfterReload := lr.elapsed - reloadAt.Sub(longStart)
	t.Logf("30 s request on the old worker %d ended %v after the reload began: %d %v", longPid, endedAfterReload.Round(time.Millisecond), lr.code, lr.err)
	if endedAfterReload > 3500*time.Millisecond {
		t.Errorf("the request beyond graceful_timeout (2s) was cut %v after the reload began, want within ~2 s", endedAfterReload.Round(time.Millisecond))
	}
	select {
	case s := <-reloaded:
		if !strings.HasPrefix(s, "200 ") {
			t.Errorf("POST /load: %s", s)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("POST /load has not returned 20 s later")
	}
	if got := mustPidInfo(t, c.URL+"/pid"); got.Tag != "B" {
		t.Errorf("after the reload: tag %q", got.Tag)
	}
}

func TestReloadImportFailureRejected(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, lifecycleCaddyfile("good", "one", "workers 2"))
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	before := waitPool(t, c, "lc", 15*time.Second, "2 workers", func(p *wsgiPool) bool { return len(p.Workers) == 2 }).pids()

	load := startLoad(loadConfig{URL: c.URL + "/pid", Concurrency: 2, Duration: 60 * time.Second, MaxRequests: 50000,
		Check: func(b []byte) error {
			if d, err := parsePidInfo(b); err != nil || d.Tag != "good" {
				return fmt.Errorf("served %q, want tag good", b)
			}
			return nil
		}})
	st := time.Now()
	out, err := caddyReload(t, c, "Caddyfile.bad", lifecycleCaddyfile("bad", "two", "workers 2", "env LIFECYCLE_IMPORT_FAIL 1"))
	took := time.Since(st)
	time.Sleep(500 * time.Millisecond)
	stats := load.Stop()
	t.Logf("rejected reload took %v; load during it: %s", took.Round(time.Millisecond), stats)
	if err == nil {
		t.Errorf("caddy reload of a config whose app fails to import succeeded; want a non-zero exit. Output:\n%s", out)
	} else if !strings.Contains(out, "lifecycle import failure requested") {
		t.Errorf("caddy reload failed (%v) but its error does not mention the import failure (RuntimeError: lifecycle import failure requested):\n%s", err, out)
	}
	if stats.Failed != 0 {
		t.Errorf("%d of %d requests failed around the rejected reload:\n%s", stats.Failed, stats.Total, stats.Failures())
	}
	if _, b := get(t, c.URL+"/ping"); string(b) != "one" {
		t.Errorf("the rejected config was partly applied: /ping %q", b)
	}
	got := mustPidInfo(t, c.URL+"/pid")
	if got.Tag != "good" || !contains(before, got.Pid) {
		t.Errorf("after the rejected reload: pid %d tag %q, want the old pool %v with tag good", got.Pid, got.Tag, before)
	}
	if after := mustPool(t, c, "lc").pids(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the old pool's workers changed: %v -> %v", before, after)
	}
	// no worker of the failed config is left behind
	time.Sleep(time.Second)
	if ps := c.WorkerPids(); fmt.Sprint(ps) != fmt.Sprint(before) {
		t.Errorf("caddy's children %v, want only the old pool %v", ps, before)
	}
}

// TestDevReload: with `reload`, changing a .py file under chdir restarts the workers, rolling,
// without failing a request.
func TestDevReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(appsDir(), "lifecycle.py"))
	if err != nil {
		t.Fatal(err)
	}
	appFile := filepath.Join(dir, "lifecycle.py")
	if err := os.WriteFile(appFile, src, 0o644); err != nil {
		t.Fatal(err)
	}
	c := startCaddy(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	wsgi lifecycle {
		python {PYTHON}
		chdir `+dir+`
		env MARKER_DIR {TMP}
		workers 2
		threads 1
		reload
		name lc-dev
	}
}
`)
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	before := waitPool(t, c, "lc-dev", 15*time.Second, "2 workers", func(p *wsgiPool) bool { return len(p.Workers) == 2 }).pids()

	var mu sync.Mutex
	versions := map[string]int{}
	var lastV1 time.Time
	load := startLoad(loadConfig{URL: c.URL + "/sleep?s=0.02", Concurrency: 4, Duration: 40 * time.Second, MaxRequests: 100000,
		Observe: func(b []byte) {
			if d, err := parsePidInfo(b); err == nil {
				mu.Lock()
				versions[d.Version]++
				if d.Version == "v1" {
					lastV1 = time.Now()
				}
				mu.Unlock()
			}
		}})

	// a change to a non-.py file restarts nothing
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not python\n"), 0o644)
	time.Sleep(2500 * time.Millisecond)
	if p := mustPool(t, c, "lc-dev").pids(); fmt.Sprint(p) != fmt.Sprint(before) {
		t.Errorf("writing a .txt file restarted workers: %v -> %v", before, p)
	}

	// change the returned version (a different length, so no stale bytecode can match)
	changed := strings.Replace(string(src), `VERSION = "v1"`, `VERSION = "v2-reloaded"`, 1)
	if changed == string(src) {
		t.Fatal("lifecycle.py has no VERSION = \"v1\" line")
	}
	changedAt := time.Now()
	if err := os.WriteFile(appFile, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	var switched time.Duration
	deadline := changedAt.Add(15 * time.Second)
	consecutive := 0
	for consecutive < 10 {
		code, b, err := tryGet(c.URL+"/pid", 10*time.Second)
		if err == nil && code == 200 {
			if d, _ := parsePidInfo(b); d.Version == "v2-reloaded" {
				if switched == 0 {
					switched = time.Since(changedAt)
				}
				consecutive++
			} else {
				consecutive = 0
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	stats := load.Stop()
	mu.Lock()
	allV2After := time.Since(changedAt) - time.Since(lastV1)
	mu.Unlock()
	t.Logf("dev reload: first v2 response %v after the change, last v1 %v after; versions %v; load %s",
		switched.Round(time.Millisecond), allV2After.Round(time.Millisecond), versions, stats)
	if consecutive < 10 {
		t.Errorf("15 s after lifecycle.py changed the app does not consistently serve the new version (first seen after %v)", switched)
	}
	if stats.Failed != 0 {
		t.Errorf("%d of %d requests failed during the dev reload:\n%s", stats.Failed, stats.Total, stats.Failures())
	}
	after := mustPool(t, c, "lc-dev").pids()
	for _, p := range after {
		if contains(before, p) {
			t.Errorf("worker %d survived the code change (before %v, after %v)", p, before, after)
		}
	}
	n := 0
	for _, e := range logEntries(c, "recycling worker") {
		if e["reason"] == "reload" {
			n++
		}
	}
	if n < 2 {
		t.Errorf("%d \"recycling worker\" entries with reason reload, want 2", n)
	}
}

// TestReloadToOtherAppImportFailureRejected: a reload that switches the site to another app
// (so another pool name, the app spec by default) that cannot import is refused with the
// import error, and the running pool keeps serving.
func TestReloadToOtherAppImportFailureRejected(t *testing.T) {
	t.Parallel()
	site := func(app string) string {
		return globalBlock() + "http://127.0.0.1:{PORT} {\n\twsgi " + app +
			" {\n\t\tpython {PYTHON}\n\t\tchdir {APPS}\n\t\tenv MARKER_DIR {TMP}\n\t\tworkers 1\n\t}\n}\n"
	}
	c := startCaddy(t, site("lifecycle"))
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	before := mustPidInfo(t, c.URL+"/pid")
	out, err := caddyReload(t, c, "Caddyfile.other", site("no_such_module_14:app"))
	if err == nil {
		t.Errorf("caddy reload to an app that cannot import succeeded; want a non-zero exit. Output:\n%s", out)
	} else if !strings.Contains(out, "No module named") {
		t.Errorf("caddy reload failed (%v) without the import error:\n%s", err, out)
	}
	code, body := rawExchange(t, c.Port, fmt.Sprintf("GET /pid HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", c.Port), false)
	if code != http.StatusOK {
		t.Fatalf("after the refused reload the site answers %d %s, want the old app's 200", code, body)
	}
	if got, err := parsePidInfo([]byte(body)); err != nil || got.Pid != before.Pid {
		t.Errorf("after the refused reload: %s (%v), want the old worker %d", body, err, before.Pid)
	}
}
