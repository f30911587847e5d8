//go:build linux

package integration

// A bounded load generator for the lifecycle tests: N goroutines share one keep-alive
// http.Client and hit a loopback URL until a deadline, a request count, or Stop. A failure is
// a transport error or any non-2xx status (or a body the optional check rejects).

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type loadConfig struct {
	URL         string        // must be a loopback URL
	Concurrency int           // goroutines (default 4)
	Duration    time.Duration // hard deadline (default 30 s, never more than 3 min)
	MaxRequests int           // stop after this many requests in all (0: only the deadline)
	ReqTimeout  time.Duration // per request (default 20 s)
	// Check, when set, is called with each 2xx body; an error makes the request a failure.
	Check func(body []byte) error
	// Observe, when set, is called with every 2xx response body (from several goroutines).
	Observe func(body []byte)
}

type loadStats struct {
	Total       int64
	Failed      int64
	Transport   int64 // failures that were transport errors
	Statuses    map[int]int64
	FailSamples []string // the first few failures, with the time since the start
	Latencies   []time.Duration
	Elapsed     time.Duration
}

func (s *loadStats) String() string {
	return fmt.Sprintf("%d requests in %v (%.0f/s), %d failed (%d transport errors), statuses %v, latency p50 %v p99 %v max %v",
		s.Total, s.Elapsed.Round(time.Millisecond), float64(s.Total)/s.Elapsed.Seconds(), s.Failed, s.Transport,
		s.Statuses, s.Percentile(50), s.Percentile(99), s.Percentile(100))
}

// Percentile returns the p-th percentile (0..100) of the latencies.
func (s *loadStats) Percentile(p float64) time.Duration {
	if len(s.Latencies) == 0 {
		return 0
	}
	l := append([]time.Duration(nil), s.Latencies...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	i := int(float64(len(l)-1) * p / 100)
	return l[i].Round(time.Millisecond)
}

// Failures describes the sampled failures.
func (s *loadStats) Failures() string { return strings.Join(s.FailSamples, "\n") }

type loadRun struct {
	cancel context.CancelFunc
	done   chan *loadStats
	stats  *loadStats
	once   sync.Once
}

// startLoad starts the load in the background; Stop ends it and returns the counts.
func startLoad(cfg loadConfig) *loadRun {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 30 * time.Second
	}
	if cfg.Duration > 3*time.Minute {
		cfg.Duration = 3 * time.Minute
	}
	if cfg.ReqTimeout <= 0 {
		cfg.ReqTimeout = 20 * time.Second
	}
	if !strings.HasPrefix(cfg.URL, "http://127.0.0.1:") && !strings.HasPrefix(cfg.URL, "http://localhost:") {
		panic("load only against loopback: " + cfg.URL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration)
	r := &loadRun{cancel: cancel, done: make(chan *loadStats, 1)}
	go func() { r.done <- runLoadCtx(ctx, cfg) }()
	return r
}

// Stop ends the load (requests in flight finish) and returns the counts. Idempotent.
func (r *loadRun) Stop() *loadStats {
	r.once.Do(func() {
		r.cancel()
		r.stats = <-r.done
	})
	return r.stats
}

// Wait waits for the load to end by itself (deadline or count) and returns the counts.
func (r *loadRun) Wait() *loadStats {
	r.once.Do(func() {
		r.stats = <-r.done
		r.cancel()
	})
	return r.stats
}

// runLoad runs the load in the foreground.
func runLoad(cfg loadConfig) *loadStats { return startLoad(cfg).Wait() }

func runLoadCtx(ctx context.Context, cfg loadConfig) *loadStats {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		panic(err)
	}
	st := &loadStats{Statuses: map[int]int64{}}
	var mu sync.Mutex
	var issued atomic.Int64
	start := time.Now()
	fail := func(msg string, transport bool) {
		mu.Lock()
		st.Failed++
		if transport {
			st.Transport++
		}
		if len(st.FailSamples) < 10 {
			st.FailSamples = append(st.FailSamples, fmt.Sprintf("+%v: %s", time.Since(start).Round(time.Millisecond), msg))
		}
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for g := 0; g < cfg.Concurrency; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One keep-alive connection at a time, never retrying (Go's http.Client would
			// resend an idempotent request whose reused connection was closed under it).
			var c *loadConn
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			for ctx.Err() == nil {
				if cfg.MaxRequests > 0 && issued.Add(1) > int64(cfg.MaxRequests) {
					return
				}
				// Requests are not tied to ctx: stopping the load lets requests in flight finish,
				// so a stop never shows up as a failure.
				t0 := time.Now()
				reused := c != nil
				var resp *http.Response
				var err error
				if c == nil {
					c, err = dialLoad(u.Host)
				}
				if err == nil {
					resp, err = c.get(u.Host, u.RequestURI(), cfg.ReqTimeout)
				}
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.Close {
					if c != nil {
						c.Close()
					}
					c = nil
				}
				lat := time.Since(t0)
				mu.Lock()
				st.Total++
				st.Latencies = append(st.Latencies, lat)
				if resp != nil {
					st.Statuses[resp.StatusCode]++
				}
				mu.Unlock()
				switch {
				case err != nil:
					conn := "a new connection"
					if reused {
						conn = "a reused keep-alive connection"
					}
					fail(fmt.Sprintf("transport error after %v on %s: %v", lat.Round(time.Millisecond), conn, err), true)
				case resp.StatusCode < 200 || resp.StatusCode > 299:
					fail(fmt.Sprintf("status %d after %v: %.200q", resp.StatusCode, lat.Round(time.Millisecond), body), false)
				default:
					if cfg.Check != nil {
						if cerr := cfg.Check(body); cerr != nil {
							fail(fmt.Sprintf("bad body: %v", cerr), false)
							continue
						}
					}
					if cfg.Observe != nil {
						cfg.Observe(body)
					}
				}
			}
		}()
	}
	wg.Wait()
	st.Elapsed = time.Since(start)
	return st
}

// loadConn is a keep-alive HTTP/1.1 client connection that never retries.
type loadConn struct {
	net.Conn
	br *bufio.Reader
}

func dialLoad(host string) (*loadConn, error) {
	c, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &loadConn{Conn: c, br: bufio.NewReader(c)}, nil
}

func (c *loadConn) get(host, target string, timeout time.Duration) (*http.Response, error) {
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, host); err != nil {
		return nil, err
	}
	return http.ReadResponse(c.br, &http.Request{Method: "GET"})
}
