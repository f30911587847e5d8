//go:build unix

package workerpool

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-wsgi/caddy-wsgi/protocol"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func startPool(t *testing.T, cfg Config) (*Pool, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	cfg.Logger = zap.New(core)
	if cfg.Chdir == "" {
		cfg.Chdir = "testdata"
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	t.Cleanup(func() { p.Stop(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p.WaitReady(ctx)
	return p, logs
}

// roundTrip sends a minimal GET over the slot and returns the response body.
func roundTrip(t *testing.T, l *Lease) string {
	t.Helper()
	s := l.Slot
	var w protocol.RequestWriter
	w.Begin(0)
	w.Add("REQUEST_METHOD", "GET")
	w.Add("PATH_INFO", "/")
	frame, _ := w.Finish(nil)
	if err := s.Send(l.Order, frame); err != nil {
		t.Fatal(err)
	}
	typ, p, err := s.Conn().ReadFrame()
	if err != nil || typ != protocol.TypeHeaders {
		t.Fatalf("frame %v, %v", typ, err)
	}
	h, err := protocol.DecodeHeaders(p)
	if err != nil || !h.Final || h.Status != "200 OK" {
		t.Fatalf("headers %+v, %v", h, err)
	}
	return string(h.Body)
}

func TestDispatchAndQueue(t *testing.T) {
	p, _ := startPool(t, Config{App: "apps:application", Workers: 2, QueueTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	waitWorkers(t, p, 2)
	a, err := p.Acquire(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Acquire(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if a.Slot.PID() == b.Slot.PID() {
		t.Fatal("two idle workers, yet both requests went to the same one")
	}
	if roundTrip(t, a) == roundTrip(t, b) {
		t.Fatal("both slots answered from one process")
	}
	start := time.Now()
	if _, err := p.Acquire(ctx, false); !errors.Is(err, ErrQueueTimeout) {
		t.Fatalf("third acquire: %v, want ErrQueueTimeout", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("queue timeout after %s, want about 300ms", d)
	}
	// A waiter gets the slot released while it waits.
	go func() { time.Sleep(50 * time.Millisecond); p.Release(a, true) }()
	c, err := p.Acquire(ctx, false)
	if err != nil || c.Slot != a.Slot {
		t.Fatalf("queued acquire got %v, %v; want the released slot", c, err)
	}
	p.Release(b, true)
	p.Release(c, true)
}

func TestMaxQueue(t *testing.T) {
	p, _ := startPool(t, Config{App: "apps:application", Workers: 1, MaxQueue: 1, QueueTimeout: time.Second})
	s, err := p.Acquire(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(s, true)
	go func() { // fills the queue, then gives back what it gets
		if q, err := p.Acquire(context.Background(), false); err == nil {
			p.Release(q, true)
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if _, err := p.Acquire(context.Background(), false); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("got %v, want ErrQueueFull", err)
	}
}

func TestDeadWorkerIsReplaced(t *testing.T) {
	p, logs := startPool(t, Config{App: "apps:application", Workers: 1})
	s, err := p.Acquire(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	oldPID := s.Slot.PID()
	p.Release(s, true)
	syscall.Kill(oldPID, syscall.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s, err := p.Acquire(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		pid := s.Slot.PID()
		alive := !s.Slot.worker.leaving()
		p.Release(s, true)
		if pid != oldPID && alive {
			if logs.FilterMessage("worker exited; replacing it").Len() == 0 {
				t.Fatal("the worker's death was not logged")
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the killed worker was not replaced")
}

func TestBootErrorIsLoggedAndFailsFast(t *testing.T) {
	p, logs := startPool(t, Config{App: "broken:application", Workers: 1})
	if _, err := p.Acquire(context.Background(), false); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	entries := logs.FilterMessage("worker failed to import the app").All()
	if len(entries) == 0 {
		t.Fatal("no boot failure logged")
	}
	tb := entries[0].ContextMap()["traceback"].(string)
	if !strings.Contains(tb, "Traceback") || !strings.Contains(tb, "database unreachable") {
		t.Fatalf("traceback missing from the log: %q", tb)
	}
	// Backoff: the next attempts are spaced out and logged.
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterMessage("restarting worker after backoff").Len() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no retry with backoff")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStopLeavesNoProcess(t *testing.T) {
	p, _ := startPool(t, Config{App: "apps:application", Workers: 2, Threads: 2})
	pids := waitWorkers(t, p, 2)
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Fatalf("worker %d still runs after Stop", pid)
		}
	}
	if _, err := p.Acquire(context.Background(), false); !errors.Is(err, ErrClosed) {
		t.Fatalf("acquire after stop: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	if backoff(1) != 100*time.Millisecond || backoff(2) != 200*time.Millisecond || backoff(30) != 5*time.Second {
		t.Fatalf("backoff: %s %s %s", backoff(1), backoff(2), backoff(30))
	}
}

func TestValidateAppSpec(t *testing.T) {
	for _, ok := range []string{"app", "pkg.mod:app", "a:b.c", "app:create_app()", "m:f('x', 1)"} {
		if err := ValidateAppSpec(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ":app", "foo:", "a b", "foo:bar(", "1mod:app", "a::b"} {
		if err := ValidateAppSpec(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestWorkerEnvInheritsAndOverrides(t *testing.T) {
	t.Setenv("WSGI_POOL_TEST_INHERITED", "yes")
	env := workerEnv(Config{Env: map[string]string{"HOME": "/override"}, Venv: "/opt/venv"})
	joined := "\n" + strings.Join(env, "\n") + "\n"
	for _, want := range []string{"\nWSGI_POOL_TEST_INHERITED=yes\n", "\nHOME=/override\n", "\nVIRTUAL_ENV=/opt/venv\n", "\nPATH=/opt/venv/bin:"} {
		if !strings.Contains(joined, want) {
			t.Errorf("worker env lacks %q", strings.TrimSpace(want))
		}
	}
	if strings.Count(joined, "\nHOME=") != 1 {
		t.Error("HOME appears twice")
	}
}

// waitWorkers waits until n workers are ready and returns their pids.
func waitWorkers(t *testing.T, p *Pool, n int) []int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		var pids []int
		for w := range p.workers {
			pids = append(pids, w.pid)
		}
		p.mu.Unlock()
		if len(pids) >= n {
			return pids
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%d workers not ready in time", n)
	return nil
}

func TestPreloadForksFromZygote(t *testing.T) {
	p, logs := startPool(t, Config{App: "apps:application", Workers: 2, Preload: true})
	pids := waitWorkers(t, p, 2)
	p.zmu.Lock()
	z := p.zyg
	p.zmu.Unlock()
	if z == nil {
		t.Fatal("no zygote running")
	}
	for _, pid := range pids {
		ppid, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(string(ppid)); f[3] != itoa(z.pid) {
			t.Fatalf("worker %d has parent %s, want the zygote %d", pid, f[3], z.pid)
		}
	}
	s, err := p.Acquire(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, s); got != itoa(s.Slot.PID()) {
		t.Fatalf("forked worker answered %q, want its pid %d", got, s.Slot.PID())
	}
	p.Release(s, true)
	// A killed forked worker is reported by the zygote and replaced.
	syscall.Kill(pids[0], syscall.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for logs.FilterMessage("worker exited; replacing it").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the zygote did not report the killed worker")
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitWorkers(t, p, 2)
	if _, err := p.Restart(context.Background(), ReasonRestart); err != nil {
		t.Fatal(err)
	}
	p.zmu.Lock()
	z2 := p.zyg
	p.zmu.Unlock()
	if z2 == nil || z2.pid == z.pid {
		t.Fatal("a restart must start a new zygote")
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{z.pid, z2.pid} {
		deadline := time.Now().Add(5 * time.Second)
		for syscall.Kill(pid, 0) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("zygote %d still runs after Stop", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestTracebackJoiner(t *testing.T) {
	var tb tracebackJoiner
	var out []string
	for _, l := range []string{
		"before",
		"Traceback (most recent call last):",
		`  File "x.py", line 1, in <module>`,
		"    boom()",
		"ValueError: boom",
		"after",
	} {
		if e, ok := tb.add(l); ok {
			out = append(out, e)
		}
	}
	if len(out) != 3 || out[0] != "before" || !strings.HasPrefix(out[1], "Traceback") ||
		!strings.HasSuffix(out[1], "ValueError: boom") || out[2] != "after" {
		t.Fatalf("got %q", out)
	}
}

func getFrame(t *testing.T) []byte {
	var w protocol.RequestWriter
	w.Begin(0)
	w.Add("REQUEST_METHOD", "GET")
	w.Add("PATH_INFO", "/")
	frame, _ := w.Finish(nil)
	return append([]byte(nil), frame...)
}

func readFinal(t *testing.T, s *Slot) string {
	t.Helper()
	typ, p, err := s.Conn().ReadFrame()
	if err != nil || typ != protocol.TypeHeaders {
		t.Fatalf("frame %v, %v", typ, err)
	}
	h, err := protocol.DecodeHeaders(p)
	if err != nil || !h.Final {
		t.Fatalf("headers %+v, %v", h, err)
	}
	return string(h.Body)
}

func TestPipelinedLeaseRunsBehindTheCurrentExchange(t *testing.T) {
	p, _ := startPool(t, Config{App: "apps:application", Workers: 1})
	ctx := context.Background()
	a, err := p.Acquire(ctx, true)
	if err != nil || a.Queued() {
		t.Fatalf("first lease: %v queued=%v", err, a != nil && a.Queued())
	}
	if err := a.Slot.Send(a.Order, getFrame(t)); err != nil {
		t.Fatal(err)
	}
	b, err := p.Acquire(ctx, true)
	if err != nil || !b.Queued() || b.Slot != a.Slot {
		t.Fatalf("second lease should queue behind the first on the same slot: %v", err)
	}
	if err := b.Slot.Send(b.Order, getFrame(t)); err != nil {
		t.Fatal(err)
	}
	first := readFinal(t, a.Slot)
	p.Release(a, true)
	if b.Wait() {
		t.Fatal("the exchange ahead succeeded: the queued lease must not be told to retry")
	}
	if second := readFinal(t, b.Slot); second != first {
		t.Fatalf("pipelined answer %q from another process than %q", second, first)
	}
	p.Release(b, true)
}

func TestPipelinedLeaseRetriesWhenTheExchangeAheadBreaks(t *testing.T) {
	p, _ := startPool(t, Config{App: "apps:application", Workers: 1, QueueTimeout: 10 * time.Second})
	ctx := context.Background()
	a, _ := p.Acquire(ctx, true)
	b, err := p.Acquire(ctx, true)
	if err != nil || !b.Queued() {
		t.Fatalf("want a queued lease: %v", err)
	}
	oldPID := a.Slot.PID()
	p.Release(a, false) // e.g. the worker died mid-exchange
	if !b.Wait() {
		t.Fatal("the queued request never ran: it must be retried elsewhere")
	}
	c, err := p.Acquire(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Slot.PID() == oldPID {
		t.Fatal("retried on the broken worker")
	}
	p.Release(c, true)
}

func TestNoPipeliningBehindSlowExchanges(t *testing.T) {
	p, _ := startPool(t, Config{App: "apps:application", Workers: 1, QueueTimeout: 100 * time.Millisecond})
	p.mu.Lock()
	p.ewma = 2 * pipelineMaxService
	p.mu.Unlock()
	a, _ := p.Acquire(context.Background(), true)
	defer p.Release(a, true)
	if _, err := p.Acquire(context.Background(), true); !errors.Is(err, ErrQueueTimeout) {
		t.Fatalf("with slow exchanges a request must wait in the queue, got %v", err)
	}
}

func TestCancelIsNotSentOnceALaterRequestIsOnTheWire(t *testing.T) {
	s, theirs := testSlot(t)
	s.Send(1, []byte("x"))
	s.Cancel(1) // sent: nothing later on the wire
	s.Send(2, []byte("y"))
	s.Cancel(1) // dropped: "y" would take it for its own
	buf := make([]byte, 64)
	theirs.SetReadDeadline(time.Now().Add(time.Second))
	n, _ := theirs.Read(buf)
	want := append(append([]byte("x"), protocol.AppendFrame(nil, protocol.TypeCancel, nil)...), 'y')
	if string(buf[:n]) != string(want) {
		t.Fatalf("wire %q, want %q", buf[:n], want)
	}
}

func TestEnvInherit(t *testing.T) {
	t.Setenv("WSGI_POOL_TEST_SECRET", "s3cret")
	t.Setenv("WSGI_POOL_TEST_WANTED", "yes")
	has := func(env []string, kv string) bool {
		for _, e := range env {
			if e == kv {
				return true
			}
		}
		return false
	}
	off := workerEnv(Config{EnvInherit: []string{"off"}, Env: map[string]string{"A": "1"}})
	if has(off, "WSGI_POOL_TEST_SECRET=s3cret") || !has(off, "A=1") || !has(off, "PATH="+os.Getenv("PATH")) {
		t.Fatalf("env_inherit off: %v", off)
	}
	some := workerEnv(Config{EnvInherit: []string{"WSGI_POOL_TEST_WANTED"}})
	if has(some, "WSGI_POOL_TEST_SECRET=s3cret") || !has(some, "WSGI_POOL_TEST_WANTED=yes") {
		t.Fatalf("env_inherit names: %v", some)
	}
	all := workerEnv(Config{})
	if !has(all, "WSGI_POOL_TEST_SECRET=s3cret") {
		t.Fatal("by default workers inherit Caddy's environment")
	}
}

func TestUserNeedsRootAndResolves(t *testing.T) {
	cred, err := Config{User: "root", Group: "0"}.credential()
	if os.Geteuid() != 0 {
		if err == nil {
			t.Fatal("user without root must be an error")
		}
		return
	}
	if err != nil || cred.Uid != 0 || cred.Gid != 0 {
		t.Fatalf("root/0: %+v %v", cred, err)
	}
	if _, err := (Config{User: "no-such-user-caddy-wsgi"}).credential(); err == nil {
		t.Fatal("unknown user accepted")
	}
}

func TestSendKeepsLeaseOrder(t *testing.T) {
	s, theirs := testSlot(t)
	done := make(chan struct{})
	go func() { s.Send(2, []byte("second")); close(done) }() // a queued lease that got there first
	time.Sleep(50 * time.Millisecond)
	s.Send(1, []byte("first"))
	<-done
	buf := make([]byte, 64)
	theirs.SetReadDeadline(time.Now().Add(time.Second))
	n, _ := io.ReadFull(theirs, buf[:len("firstsecond")])
	if string(buf[:n]) != "firstsecond" {
		t.Fatalf("wire order %q: a queued REQUEST overtook the running one", buf[:n])
	}
}

// testSlot is a slot over a real socketpair with no worker; theirs is the worker's end.
func testSlot(t *testing.T) (*Slot, *os.File) {
	t.Helper()
	c, theirs, err := protocol.Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); theirs.Close() })
	return newSlot(c, nil), theirs
}

// A worker still importing when Restart begins may have read the old code: Restart
// replaces it too once it is ready, and counts it.
func TestRestartReplacesABootingWorker(t *testing.T) {
	dir := t.TempDir()
	setVersion := func(v string) {
		if err := os.WriteFile(dir+"/version.txt", []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setVersion("v1")
	app := "import os, time\nVERSION = open('version.txt').read()\n" +
		"open('read-%d' % os.getpid(), 'w').close()\ntime.sleep(0.4)\n" +
		"def application(environ, start_response):\n" +
		"    start_response('200 OK', [])\n    return [VERSION.encode()]\n"
	if err := os.WriteFile(dir+"/slowboot.py", []byte(app), 0o644); err != nil {
		t.Fatal(err)
	}
	p, _ := startPool(t, Config{App: "slowboot:application", Workers: 1, Chdir: dir})
	waitWorkers(t, p, 1)
	if err := p.Scale(2); err != nil {
		t.Fatal(err)
	}
	// Wait until the second worker has read v1; it is then importing for 0.4 s.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if read, _ := filepath.Glob(dir + "/read-*"); len(read) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second worker did not start importing")
		}
	}
	setVersion("v2")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := p.Restart(ctx, ReasonRestart)
	if err != nil || n != 2 {
		t.Errorf("Restart with one worker ready and one booting: replaced %d, %v; want 2", n, err)
	}
	a, err := p.Acquire(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Acquire(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if va, vb := roundTrip(t, a), roundTrip(t, b); va != "v2" || vb != "v2" {
		t.Errorf("after Restart the workers serve %q and %q, want v2 from both", va, vb)
	}
	p.Release(a, true)
	p.Release(b, true)
}
