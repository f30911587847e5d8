//go:build linux

package integration

// Worker pool behaviour: crashes, replacement, boot failures and recovery, queueing, threads,
// and shutdown leaving no Python process behind.

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestWorkerExitMidRequest(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "behave", "workers 2", "threads 1"))
	before := c.waitWorkers(t, 2, 15*time.Second)

	id := token("a")
	long := goGet(c.URL+"/sleep?s=2&id="+id, 30*time.Second)
	busy := readPidMarker(t, c, id)

	resp, body := get(t, c.URL+"/exit?code=1")
	if resp.StatusCode != 502 {
		t.Errorf("request whose worker called os._exit: status %d, want 502 (%.200s)", resp.StatusCode, body)
	}
	r := awaitResult(t, long, 30*time.Second, "concurrent request")
	if r.err != nil || r.code != 200 || pidOf(t, r.body) != busy {
		t.Errorf("concurrent request on the other worker: %d %v %.200s, want 200 from pid %d", r.code, r.err, r.body, busy)
	}
	var dead int
	for _, p := range before {
		if p != busy {
			dead = p
		}
	}
	if dead == 0 {
		t.Fatalf("cannot tell the crashed worker from %v (busy %d)", before, busy)
	}
	if alive := waitPidsGone([]int{dead}, 5*time.Second); len(alive) > 0 {
		t.Errorf("worker %d that called os._exit still exists", dead)
	}
	after := waitReplaced(t, c, 2, dead)
	t.Logf("workers before %v, after %v", before, after)
	checkLaterRequestsSucceed(t, c, 6)
}

func TestWorkerSIGKILLMidRequest(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "behave", "workers 2", "threads 1"))
	c.waitWorkers(t, 2, 15*time.Second)

	idVictim, idOther := token("v"), token("o")
	victimReq := goGet(c.URL+"/sleep?s=20&id="+idVictim, 40*time.Second)
	victim := readPidMarker(t, c, idVictim)
	otherReq := goGet(c.URL+"/sleep?s=1.5&id="+idOther, 30*time.Second)
	other := readPidMarker(t, c, idOther)
	if other == victim {
		t.Fatalf("both requests on the same single-threaded worker %d", victim)
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := awaitResult(t, victimReq, 10*time.Second, "request of the killed worker")
	if r.err != nil || r.code != 502 {
		t.Errorf("request whose worker was SIGKILLed: %d %v, want 502", r.code, r.err)
	}
	if r.elapsed > 8*time.Second {
		t.Errorf("the 502 took %v (the worker death was not noticed promptly)", r.elapsed)
	}
	r = awaitResult(t, otherReq, 30*time.Second, "concurrent request")
	if r.err != nil || r.code != 200 || pidOf(t, r.body) != other {
		t.Errorf("concurrent request on the other worker: %d %v %.200s", r.code, r.err, r.body)
	}
	waitReplaced(t, c, 2, victim)
	checkLaterRequestsSucceed(t, c, 6)

	// a worker killed while streaming a response (headers sent): the client sees an aborted
	// response, never a clean end
	sresp, err := testClient.Get(c.URL + "/stream?n=200000&size=65536")
	if err != nil {
		t.Fatal(err)
	}
	spid, _ := strconv.Atoi(sresp.Header.Get("X-Pid"))
	buf := make([]byte, 65536)
	if _, err := io.ReadFull(sresp.Body, buf); err != nil || spid == 0 {
		t.Fatalf("stream start: %v pid %q", err, sresp.Header.Get("X-Pid"))
	}
	syscall.Kill(spid, syscall.SIGKILL)
	n, err := io.Copy(io.Discard, sresp.Body)
	sresp.Body.Close()
	if err == nil {
		t.Errorf("response of a worker SIGKILLed mid-stream ended cleanly after %d more bytes", n)
	}
	waitReplaced(t, c, 2, spid)
	checkLaterRequestsSucceed(t, c, 4)

	// a worker that SIGKILLs itself inside the app: 502 as well, and the pool recovers
	resp, _ := get(t, c.URL+"/kill-self")
	if resp.StatusCode != 502 {
		t.Errorf("/kill-self: status %d, want 502", resp.StatusCode)
	}
	checkLaterRequestsSucceed(t, c, 4)
}

func TestImportFailureRecovers(t *testing.T) {
	t.Parallel()
	c, dir := newCaddyfileWithBroken(t)
	brokenHost := map[string]string{"Host": fmt.Sprintf("127.0.0.1:%d", c.Port)}
	goodHost := map[string]string{"Host": fmt.Sprintf("localhost:%d", c.Port)}

	c.WaitLog(t, "No module named 'nonexistent_module_xyz'", 20*time.Second)
	if !strings.Contains(c.Logs(), "Traceback") && !strings.Contains(c.Logs(), "ModuleNotFoundError") {
		t.Errorf("the Python traceback of the failed import is not in caddy's log")
	}
	st := time.Now()
	resp, body := do(t, "GET", c.URL+"/", brokenHost, nil)
	if resp.StatusCode != 503 {
		t.Errorf("request to the app that fails to import: %d, want 503 (%.200s)", resp.StatusCode, body)
	}
	if el := time.Since(st); el > 6*time.Second {
		t.Errorf("the 503 took %v", el)
	}
	resp, body = do(t, "GET", c.URL+"/", goodHost, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"env"`) {
		t.Errorf("the other site in the same caddy: %d %.200s, want 200 probe output", resp.StatusCode, body)
	}
	// fix the module; the pool must recover by itself
	fixed := "def application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'fixed-app']\n"
	if err := os.WriteFile(filepath.Join(dir, "broken.py"), []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "__pycache__"))
	// Without sending any request, a worker of the fixed app must come up and stay up: a
	// child of caddy whose cwd is the app directory, alive across two looks 1 s apart.
	fixedAt := time.Now()
	deadline := fixedAt.Add(45 * time.Second)
	stable := 0
	var prev int
	for stable < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no worker of the fixed app stayed up within 45 s (the pool does not retry by itself); children %v", c.WorkerPids())
		}
		cur := 0
		for _, p := range c.WorkerPids() {
			if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", p)); err == nil && cwd == dir {
				cur = p
			}
		}
		if cur != 0 && cur == prev {
			stable++
		} else {
			stable = 0
			if cur != 0 {
				stable = 1
			}
		}
		prev = cur
		time.Sleep(time.Second)
	}
	t.Logf("a worker of the fixed app (pid %d) is up %v after the fix", prev, time.Since(fixedAt))
	resp, body = do(t, "GET", c.URL+"/", brokenHost, nil)
	if resp.StatusCode != 200 || string(body) != "fixed-app" {
		t.Errorf("after recovery: %d %q, want 200 fixed-app", resp.StatusCode, body)
	}
	resp, _ = do(t, "GET", c.URL+"/", goodHost, nil)
	if resp.StatusCode != 200 {
		t.Errorf("good site after recovery: %d", resp.StatusCode)
	}
}

func newCaddyfileWithBroken(t *testing.T) (*Caddy, string) {
	t.Helper()
	// broken.py lives in {TMP}; startCaddy creates {TMP} before writing the Caddyfile, so
	// write the module through a hook: create it in a dir we know, passed as chdir.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "broken.py"), []byte("import nonexistent_module_xyz  # fails\n\ndef application(e, s):\n    pass\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startCaddy(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	wsgi broken {
		python {PYTHON}
		chdir `+dir+`
		workers 1
		queue_timeout 3s
	}
}
http://localhost:{PORT} {
	wsgi probe {
		python {PYTHON}
		chdir {APPS}
		workers 1
	}
}
`)
	return c, dir
}

func TestQueueTimeout(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "behave", "workers 1", "threads 1", "queue_timeout 500ms"))
	id := token("q")
	long := goGet(c.URL+"/sleep?s=3&id="+id, 30*time.Second)
	readPidMarker(t, c, id)
	st := time.Now()
	resp, body := get(t, c.URL+"/pid")
	el := time.Since(st)
	if resp.StatusCode != 503 {
		t.Errorf("request while the only worker is busy: %d, want 503 after queue_timeout (%.200s)", resp.StatusCode, body)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
	if el < 400*time.Millisecond || el > 2500*time.Millisecond {
		t.Errorf("503 after %v, want ~500ms (queue_timeout)", el)
	}
	r := awaitResult(t, long, 30*time.Second, "long request")
	if r.code != 200 {
		t.Errorf("the long request: %d %v", r.code, r.err)
	}
	resp, _ = get(t, c.URL+"/pid")
	if resp.StatusCode != 200 {
		t.Errorf("after the worker is free: %d", resp.StatusCode)
	}
}

func TestMaxQueue(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "behave", "workers 1", "threads 1", "queue_timeout 20s", "max_queue 1"))
	id := token("m")
	long := goGet(c.URL+"/sleep?s=3&id="+id, 30*time.Second)
	readPidMarker(t, c, id)
	queued := goGet(c.URL+"/pid", 30*time.Second)
	time.Sleep(500 * time.Millisecond) // let it enter the queue
	st := time.Now()
	resp, body := get(t, c.URL+"/pid")
	el := time.Since(st)
	if resp.StatusCode != 503 {
		t.Errorf("request beyond max_queue: %d, want 503 (%.200s)", resp.StatusCode, body)
	}
	if el > 1500*time.Millisecond {
		t.Errorf("503 beyond max_queue took %v, want immediate", el)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
	r := awaitResult(t, long, 30*time.Second, "long request")
	if r.code != 200 {
		t.Errorf("long request: %d %v", r.code, r.err)
	}
	r = awaitResult(t, queued, 30*time.Second, "queued request")
	if r.code != 200 {
		t.Errorf("queued request: %d %v, want 200 once the worker is free", r.code, r.err)
	}
}

func TestThreadsServeConcurrently(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "behave", "workers 1", "threads 3"))
	get(t, c.URL+"/pid") // warm up
	const n = 3
	st := time.Now()
	var chans []<-chan asyncResult
	for i := 0; i < n; i++ {
		chans = append(chans, goGet(c.URL+"/sleep?s=1.5", 30*time.Second))
	}
	pids := map[int]bool{}
	for _, ch := range chans {
		r := awaitResult(t, ch, 30*time.Second, "sleep request")
		if r.code != 200 {
			t.Fatalf("status %d %v", r.code, r.err)
		}
		pids[pidOf(t, r.body)] = true
	}
	el := time.Since(st)
	if el > 2800*time.Millisecond {
		t.Errorf("%d concurrent 1.5 s requests on 1 worker x 3 threads took %v, want < 2.8 s", n, el)
	}
	if len(pids) != 1 {
		t.Errorf("requests served by pids %v, want one worker", pids)
	}
	if ps := c.WorkerPids(); len(ps) != 1 {
		t.Errorf("caddy has %d children %v with workers 1", len(ps), ps)
	}
}

// ---------------------------------------------------------------------------------------------
// shutdown

func TestShutdownLeavesNoWorkers(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"caddy_stop", "sigint", "sigkill"} {
		how := how
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			c := startCaddy(t, wsgiSite(localSite, "behave", "workers 2", "threads 2"))
			pids := c.waitWorkers(t, 2, 15*time.Second)
			resp, body := get(t, c.URL+"/pid")
			if resp.StatusCode != 200 {
				t.Fatalf("/pid %d", resp.StatusCode)
			}
			if p := pidOf(t, body); !contains(pids, p) {
				pids = append(pids, p)
			}
			var inflight <-chan asyncResult
			switch how {
			case "caddy_stop":
				out, err := runCaddyCmd(t, c.Dir, "stop", "--address", c.Admin)
				if err != nil {
					t.Errorf("caddy stop: %v\n%s", err, out)
				}
				select {
				case <-c.done:
				case <-time.After(15 * time.Second):
					t.Fatalf("caddy still running 15 s after `caddy stop`")
				}
			case "sigint":
				c.Stop(t)
			case "sigkill":
				// one worker busy in the app when caddy dies
				id := token("k")
				inflight = goGet(c.URL+"/sleep?s=30&id="+id, 40*time.Second)
				readPidMarker(t, c, id)
				c.Kill(t)
			}
			if alive := waitPidsGone(pids, 5*time.Second); len(alive) > 0 {
				sort.Ints(alive)
				for _, p := range alive {
					syscall.Kill(p, syscall.SIGKILL) // do not leak them into other tests
				}
				t.Errorf("after %s, Python workers %v (of %v) were still running 5 s later", how, alive, pids)
			}
			if inflight != nil {
				r := awaitResult(t, inflight, 10*time.Second, "in-flight request")
				if r.err == nil && r.code == 200 {
					t.Errorf("in-flight request succeeded although caddy was killed")
				}
			}
		})
	}
}

// ---------------------------------------------------------------------------------------------
// config reload

func TestReloadReplacesChangedPools(t *testing.T) {
	t.Parallel()
	cf := func(tagA string) string {
		return globalBlock() + `
http://127.0.0.1:{PORT} {
	respond /ping "pong-` + tagA + `"
	handle_path /a/* {
		wsgi probe {
			python {PYTHON}
			chdir {APPS}
			env PROBE_TAG ` + tagA + `
			workers 1
		}
	}
	handle_path /b/* {
		wsgi probe {
			python {PYTHON}
			chdir {APPS}
			env PROBE_TAG b
			workers 1
		}
	}
}
`
	}
	c := startCaddy(t, cf("one"))
	a1, b1 := getProbe(t, c.URL+"/a/"), getProbe(t, c.URL+"/b/")
	if a1.OSEnv["PROBE_TAG"] != "one" || b1.OSEnv["PROBE_TAG"] != "b" {
		t.Fatalf("tags %v %v", a1.OSEnv, b1.OSEnv)
	}
	if err := os.WriteFile(c.ConfigPath, []byte(c.expandPlaceholders(t, cf("two"))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runCaddyCmd(t, c.Dir, "reload", "--config", c.ConfigPath, "--adapter", "caddyfile", "--address", c.Admin)
	if err != nil {
		t.Fatalf("caddy reload: %v\n%s", err, out)
	}
	waitStatus(t, c.URL+"/ping", 200, 10*time.Second)
	if _, b := get(t, c.URL+"/ping"); string(b) != "pong-two" {
		t.Fatalf("reload not applied: /ping = %q", b)
	}
	a2 := getProbe(t, c.URL+"/a/")
	if a2.OSEnv["PROBE_TAG"] != "two" {
		t.Errorf("changed wsgi block after reload: PROBE_TAG %q, want two", a2.OSEnv["PROBE_TAG"])
	}
	if a2.Pid == a1.Pid {
		t.Errorf("changed wsgi block still served by the old worker %d", a1.Pid)
	}
	if alive := waitPidsGone([]int{a1.Pid}, 10*time.Second); len(alive) > 0 {
		t.Errorf("worker %d of the replaced pool still running 10 s after the reload", a1.Pid)
	}
	b2 := getProbe(t, c.URL+"/b/")
	if b2.OSEnv["PROBE_TAG"] != "b" {
		t.Errorf("unchanged block: PROBE_TAG %q", b2.OSEnv["PROBE_TAG"])
	}
	if b2.Pid != b1.Pid {
		t.Errorf("unchanged wsgi block got new workers on reload (pid %d -> %d); warm workers should be kept", b1.Pid, b2.Pid)
	}
	if ps := c.WorkerPids(); len(ps) != 2 {
		t.Errorf("caddy has %d Python children %v after the reload, want 2", len(ps), ps)
	}
}
