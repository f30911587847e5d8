// Command wsload is the WebSocket load generator of the caddy-wsgi benchmark suite
// (bench/run.sh builds it into bench/.build/wsload).
//
// It opens -c connections to a WebSocket echo endpoint; each sends a small text message and
// waits for its echo, back to back, until -d has passed (or -rounds round trips are done),
// then closes with a close frame. It stops by itself: a round trip in flight at the deadline
// is given -timeout at most. Only loopback addresses are accepted.
//
// The result is one line on stdout:
//
//	WSLOAD {"connections":64,"roundtrips":123456,"duration_us":5000123,...}
//
// with the latency percentiles of the round trips (write of the message to the end of the
// read of its echo) in microseconds, and the errors by kind. The exit status is 1 when no
// round trip succeeded, 2 on bad flags.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// hist is a log-linear latency histogram in nanoseconds: exact below 128 ns, then 64
// buckets per power of two (under 1.6 % error), so its size does not grow with the run.
type hist struct {
	counts [64 * 64]uint64
	n      uint64
	sum    uint64
	max    uint64
}

func bucket(v uint64) int {
	if v < 128 {
		return int(v)
	}
	shift := bits.Len64(v) - 7
	return shift*64 + int(v>>uint(shift))
}

// value is the middle of a bucket.
func value(i int) uint64 {
	if i < 128 {
		return uint64(i)
	}
	shift := i/64 - 1
	m := uint64(i - shift*64)
	return m<<uint(shift) + (uint64(1)<<uint(shift))/2
}

func (h *hist) add(d time.Duration) {
	v := uint64(d)
	h.counts[bucket(v)]++
	h.n++
	h.sum += v
	if v > h.max {
		h.max = v
	}
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	if o.max > h.max {
		h.max = o.max
	}
}

func (h *hist) percentile(p float64) uint64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(p / 100 * float64(h.n))
	if rank >= h.n {
		rank = h.n - 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen > rank {
			if v := value(i); v < h.max {
				return v
			}
			return h.max
		}
	}
	return h.max
}

type counts struct {
	connect, read, write, timeout, mismatch, closed uint64
}

type conn struct {
	hist     hist
	errs     counts
	bytes    uint64
	lastDone time.Time
}

type runner struct {
	url      string
	msg      []byte
	rounds   int
	failFast bool
	timeout  time.Duration
	deadline time.Time
	dialer   websocket.Dialer

	mu       sync.Mutex
	firstErr string
}

func (r *runner) noteErr(format string, a ...any) {
	r.mu.Lock()
	if r.firstErr == "" {
		r.firstErr = fmt.Sprintf(format, a...)
	}
	r.mu.Unlock()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (r *runner) dial() (*websocket.Conn, error) {
	c, resp, err := r.dialer.Dial(r.url, nil)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
			resp.Body.Close()
			return nil, fmt.Errorf("handshake: HTTP %s %q", resp.Status, strings.TrimSpace(string(body)))
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	return c, nil
}

// close sends a close frame and waits (1 s at most) for the server's.
func closeConn(c *websocket.Conn) {
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
		time.Now().Add(time.Second))
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	for {
		if _, _, err := c.NextReader(); err != nil {
			break
		}
	}
	c.Close()
}

func (r *runner) run(st *conn) {
	done := 0
	for time.Now().Before(r.deadline) && (r.rounds == 0 || done < r.rounds) {
		c, err := r.dial()
		if err != nil {
			st.errs.connect++
			r.noteErr("%v", err)
			if r.failFast {
				return
			}
			// do not spin on a server that refuses: retry after a short pause
			pause := 50 * time.Millisecond
			if left := time.Until(r.deadline); left < pause {
				pause = left
			}
			if pause > 0 {
				time.Sleep(pause)
			}
			continue
		}
		broken := false
		for time.Now().Before(r.deadline) && (r.rounds == 0 || done < r.rounds) {
			t0 := time.Now()
			_ = c.SetWriteDeadline(t0.Add(r.timeout))
			if err := c.WriteMessage(websocket.TextMessage, r.msg); err != nil {
				if isTimeout(err) {
					st.errs.timeout++
				} else {
					st.errs.write++
				}
				r.noteErr("write: %v", err)
				broken = true
				break
			}
			_ = c.SetReadDeadline(t0.Add(r.timeout))
			mt, data, err := c.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				switch {
				case isTimeout(err):
					st.errs.timeout++
				case errors.As(err, &ce):
					st.errs.closed++
				default:
					st.errs.read++
				}
				r.noteErr("read: %v", err)
				broken = true
				break
			}
			now := time.Now()
			if mt != websocket.TextMessage || !bytes.Equal(data, r.msg) {
				st.errs.mismatch++
				r.noteErr("echo mismatch: type %d, %d bytes %q", mt, len(data), truncate(data, 40))
			} else {
				st.hist.add(now.Sub(t0))
				st.bytes += uint64(2 * len(r.msg))
				done++
			}
			st.lastDone = now
		}
		if broken {
			c.Close()
			if r.failFast {
				return
			}
			continue
		}
		closeConn(c)
	}
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

func loopbackOnly(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return fmt.Errorf("scheme %q: want ws or wss", u.Scheme)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("host %q: only loopback addresses are allowed (127.0.0.0/8, ::1, localhost)", host)
	}
	return nil
}

type summary struct {
	URL         string            `json:"url"`
	Connections int               `json:"connections"`
	Roundtrips  uint64            `json:"roundtrips"`
	DurationUS  int64             `json:"duration_us"`
	Bytes       uint64            `json:"bytes"`
	Errors      map[string]uint64 `json:"errors"`
	P50US       float64           `json:"p50_us"`
	P90US       float64           `json:"p90_us"`
	P99US       float64           `json:"p99_us"`
	MaxUS       float64           `json:"max_us"`
	MeanUS      float64           `json:"mean_us"`
	FirstError  string            `json:"first_error,omitempty"`
}

func main() {
	target := flag.String("url", "", "WebSocket echo URL, e.g. ws://127.0.0.1:8080/ws (loopback only)")
	nconn := flag.Int("c", 64, "connections")
	dur := flag.Duration("d", 5*time.Second, "duration (at most 10m)")
	rounds := flag.Int("rounds", 0, "round trips per connection, then stop (0: until -d)")
	msg := flag.String("msg", "Hello, world!", "text message sent and expected back")
	timeout := flag.Duration("timeout", 10*time.Second, "handshake and round-trip timeout")
	failFast := flag.Bool("fail-fast", false, "a connection stops at its first error instead of reconnecting")
	flag.Parse()
	fail := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "wsload: "+format+"\n", a...)
		os.Exit(2)
	}
	if *target == "" {
		fail("-url is required")
	}
	if err := loopbackOnly(*target); err != nil {
		fail("%v", err)
	}
	if *nconn < 1 || *nconn > 10000 {
		fail("-c must be in 1..10000")
	}
	if *dur <= 0 || *dur > 10*time.Minute {
		fail("-d must be in (0, 10m]")
	}
	if *timeout <= 0 || *timeout > time.Minute {
		fail("-timeout must be in (0, 1m]")
	}

	r := &runner{
		url: *target, msg: []byte(*msg), rounds: *rounds, failFast: *failFast, timeout: *timeout,
		dialer: websocket.Dialer{HandshakeTimeout: *timeout, ReadBufferSize: 4096, WriteBufferSize: 4096},
	}
	conns := make([]*conn, *nconn)
	start := time.Now()
	r.deadline = start.Add(*dur)
	var wg sync.WaitGroup
	for i := range conns {
		conns[i] = &conn{}
		wg.Add(1)
		go func(st *conn) {
			defer wg.Done()
			r.run(st)
		}(conns[i])
	}
	wg.Wait()

	var h hist
	var e counts
	var nbytes uint64
	end := start
	for _, st := range conns {
		h.merge(&st.hist)
		e.connect += st.errs.connect
		e.read += st.errs.read
		e.write += st.errs.write
		e.timeout += st.errs.timeout
		e.mismatch += st.errs.mismatch
		e.closed += st.errs.closed
		nbytes += st.bytes
		if st.lastDone.After(end) {
			end = st.lastDone
		}
	}
	if end.Equal(start) {
		end = time.Now()
	}
	us := func(ns uint64) float64 { return float64(ns) / 1e3 }
	s := summary{
		URL: *target, Connections: *nconn, Roundtrips: h.n, DurationUS: end.Sub(start).Microseconds(), Bytes: nbytes,
		Errors: map[string]uint64{"connect": e.connect, "read": e.read, "write": e.write, "timeout": e.timeout,
			"mismatch": e.mismatch, "closed": e.closed},
		P50US: us(h.percentile(50)), P90US: us(h.percentile(90)), P99US: us(h.percentile(99)), MaxUS: us(h.max),
		FirstError: r.firstErr,
	}
	if h.n > 0 {
		s.MeanUS = us(h.sum / h.n)
	}
	out, _ := json.Marshal(s)
	fmt.Printf("WSLOAD %s\n", out)
	if h.n == 0 {
		os.Exit(1)
	}
}
