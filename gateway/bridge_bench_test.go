//go:build unix

package gateway

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-wsgi/caddy-wsgi/workerpool"
)

// BenchmarkBridge measures the bridge alone: the handler, dispatch, the channel and the
// Python runtime, with no HTTP parsing or client socket (the response goes to a sink).
// It reports the CPU that Caddy's side and the workers spend per request, so an A/B of
// the transport reads without wrk's and Caddy's HTTP share. Run:
//
//	go test ./gateway -run '^$' -bench Bridge -benchtime 20000x
//
// BRIDGE_PATH picks the route (default /; /stream streams 5 blocks; /framework answers as
// Flask and Django do: an iterator, with Content-Length), BRIDGE_WORKERS and
// BRIDGE_CONC the pool size and the concurrency (default 2 and 64).
func BenchmarkBridge(b *testing.B) {
	workers := envInt("BRIDGE_WORKERS", 2)
	conc := envInt("BRIDGE_CONC", 64)
	path := os.Getenv("BRIDGE_PATH")
	if path == "" {
		path = "/"
	}
	pool, err := workerpool.New(workerpool.Config{App: "app:application", Chdir: "testdata", Workers: workers})
	if err != nil {
		b.Fatal(err)
	}
	pool.Start()
	defer pool.Stop(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if !pool.WaitReady(ctx) {
		b.Fatal("pool not ready")
	}
	h := New(pool, Options{})
	pids := func() []int {
		var out []int
		for _, w := range pool.Stats().Workers {
			out = append(out, w.PID)
		}
		return out
	}
	for len(pids()) < workers {
		time.Sleep(10 * time.Millisecond)
	}
	req, _ := http.NewRequest("GET", "http://127.0.0.1:8080"+path, nil)
	req.RemoteAddr = "127.0.0.1:40000"
	req.RequestURI = path
	req.Header.Set("User-Agent", "bench")
	req.Header.Set("Accept", "*/*")

	var n sync.WaitGroup
	work := make(chan struct{}, conc)
	serve := func() {
		defer n.Done()
		w := &sinkWriter{h: http.Header{}}
		for range work {
			clear(w.h)
			h.ServeHTTP(w, req.Clone(context.Background()), Request{})
			if w.code != 200 {
				b.Errorf("status %d", w.code)
			}
		}
	}
	// warm-up
	n.Add(conc)
	for i := 0; i < conc; i++ {
		go serve()
	}
	for i := 0; i < 2000; i++ {
		work <- struct{}{}
	}
	close(work)
	n.Wait()

	work = make(chan struct{}, conc)
	workerCPU0 := cpuOf(pids())
	var ru0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	start := time.Now()
	b.ResetTimer()
	n.Add(conc)
	for i := 0; i < conc; i++ {
		go serve()
	}
	for i := 0; i < b.N; i++ {
		work <- struct{}{}
	}
	close(work)
	n.Wait()
	b.StopTimer()
	elapsed := time.Since(start)
	var ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	goCPU := tv(ru1.Utime) + tv(ru1.Stime) - tv(ru0.Utime) - tv(ru0.Stime)
	pyCPU := cpuOf(pids()) - workerCPU0
	per := float64(b.N)
	b.ReportMetric(per/elapsed.Seconds(), "req/s")
	b.ReportMetric(goCPU.Seconds()*1e6/per, "go-µs/req")
	b.ReportMetric(pyCPU.Seconds()*1e6/per, "py-µs/req")
}

type sinkWriter struct {
	h    http.Header
	code int
	n    int
}

func (s *sinkWriter) Header() http.Header         { return s.h }
func (s *sinkWriter) WriteHeader(code int)        { s.code = code }
func (s *sinkWriter) Write(p []byte) (int, error) { s.n += len(p); return len(p), nil }
func (s *sinkWriter) Flush()                      {}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func tv(t syscall.Timeval) time.Duration {
	return time.Duration(t.Sec)*time.Second + time.Duration(t.Usec)*time.Microsecond
}

// cpuOf sums utime+stime of the processes (from /proc/<pid>/stat).
func cpuOf(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(data)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		u, _ := strconv.Atoi(f[11])
		st, _ := strconv.Atoi(f[12])
		total += time.Duration(u+st) * time.Second / 100 // USER_HZ is 100 on Linux
	}
	return total
}
