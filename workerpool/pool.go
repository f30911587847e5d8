package workerpool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-wsgi/caddy-wsgi/protocol"
	"go.uber.org/zap"
)

// Errors returned by Acquire. All mean "answer 503 with Retry-After".
var (
	ErrQueueTimeout = errors.New("no worker became free within the queue timeout")
	ErrQueueFull    = errors.New("request queue is full")
	ErrUnavailable  = errors.New("no worker is running: the app fails to start")
	ErrClosed       = errors.New("worker pool is stopped")
)

// Slot is one worker thread's channel. It runs one exchange at a time, and may hold
// one more queued behind it (see Lease).
type Slot struct {
	conn    *protocol.Conn
	worker  *worker
	current atomic.Pointer[Activity]

	// Guarded by Pool.mu:
	since       time.Time // when the running exchange started
	pipelinable bool      // the running exchange takes no body from READ
	queued      []*Lease  // exchanges whose REQUEST is already written behind it, in order

	// REQUEST frames go out in the order their leases were given (ordered, under
	// Pool.mu), whichever goroutine gets to write first: the worker runs exchanges in
	// wire order, and each lease reads the frames of its own exchange.
	ordered uint64     // leases given; guarded by Pool.mu
	wmu     sync.Mutex // guards written and the socket's write side
	turn    *sync.Cond // signalled when written advances
	written uint64     // REQUEST frames written (or skipped after a write error)
}

// Send writes the REQUEST frame of the lease with this order number, after the frames
// of every earlier lease on the slot.
func (s *Slot) Send(order uint64, frame []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for s.written+1 != order {
		s.turn.Wait()
	}
	err := s.conn.Write(frame)
	s.written = order
	s.turn.Broadcast()
	return err
}

// Cancel sends CANCEL for the exchange of the lease with this order number, unless a
// later REQUEST is already on the wire: a CANCEL always refers to the latest REQUEST
// before it (PROTOCOL.md), so that exchange then runs to its end and the caller
// discards it.
func (s *Slot) Cancel(order uint64) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.written == order {
		s.conn.Write(protocol.AppendFrame(nil, protocol.TypeCancel, nil))
	}
}

func newSlot(conn *protocol.Conn, w *worker) *Slot {
	s := &Slot{conn: conn, worker: w}
	s.turn = sync.NewCond(&s.wmu)
	return s
}

// Activity is what a slot is doing, for the admin API.
type Activity struct {
	Request string
	Since   time.Time
}

// Begin records the request the slot now serves.
func (s *Slot) Begin(request string) { s.current.Store(&Activity{Request: request, Since: time.Now()}) }

// KillStuck handles a request past its deadline: the worker's thread stacks are
// logged in one entry with the request, and the worker is killed (its supervisor
// replaces it). The caller answers 504 and releases the slot as unhealthy.
func (p *Pool) KillStuck(s *Slot, request string, elapsed time.Duration) {
	w := s.worker
	p.removeWorker(w, workerStopped) // about to be killed; its other threads look idle: no new request may go there
	stacks := w.dumpStacks()
	p.log.Error("request timed out; killing the worker",
		zap.Int("pid", w.pid), zap.String("request", request), zap.Duration("elapsed", elapsed),
		zap.Duration("timeout", p.cfg.Timeout), zap.String("stacks", stacks))
	reason := ReasonTimeout
	w.stopReason.Store(&reason)
	w.kill()
}

func (p *Pool) countRestart(reason string) {
	p.mu.Lock()
	p.restarts[reason]++
	p.mu.Unlock()
}

// Conn is the channel to talk PROTOCOL.md over.
func (s *Slot) Conn() *protocol.Conn { return s.conn }

// PID is the worker's process id, for logs.
func (s *Slot) PID() int { return s.worker.pid }

// Pool is a supervised set of worker processes with a dispatch queue.
type Pool struct {
	cfg    Config
	log    *zap.Logger
	python string
	env    []string
	cred   *workerCred // workers' user and group, nil to keep Caddy's

	wg        sync.WaitGroup            // supervisors
	positions []context.CancelCauseFunc // one per worker position; guarded by mu
	restarts  map[string]int64          // by reason; guarded by mu
	zmu       sync.Mutex
	zyg       *zygote // with Preload: the running zygote, started on first use
	// background tasks (code watcher, autoscaler), stopped with the pool
	background []context.CancelCauseFunc

	// state: starting, ready, failing, draining, stopped. Transitions happen under mu,
	// with the workers and waiters they depend on.
	state *lifecycle[poolState]

	mu      sync.Mutex
	waiters waitQueue
	workers map[*worker]struct{} // in dispatch
	live    map[*worker]struct{} // every worker from its launch until its channels close
	// codeGen counts Restarts; spawning counts the boots in progress by the codeGen
	// they started under, so a Restart also replaces a worker that was still importing.
	codeGen  uint64
	spawning map[uint64]int
	ewma     time.Duration // smoothed service time of an exchange, for pipelining
	bootErrs int           // positions whose latest boot failed
	lastErr  error
	// Requests inside the handler (reading a body, queued, running), and when the
	// latest one came in: Stop drains them before it closes the pool.
	entered   atomic.Int64
	lastEnter atomic.Int64 // unix nanoseconds
}

// New validates cfg and returns a pool that is not started yet.
func New(cfg Config) (*Pool, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	python, _ := cfg.Interpreter()
	cred, _ := cfg.credential()
	log := cfg.Logger.With(zap.String("app", cfg.App))
	return &Pool{
		cred:     cred,
		cfg:      cfg,
		log:      log,
		python:   python,
		env:      workerEnv(cfg),
		workers:  make(map[*worker]struct{}),
		live:     make(map[*worker]struct{}),
		spawning: make(map[uint64]int),
		restarts: make(map[string]int64),
		state:    newLifecycle(poolStarting, int(poolStates), poolTransition, "pool", log, nil),
	}, nil
}

// Retiring returns two channels: one closed when the pool stops (a reload that changed it,
// or Caddy stopping), one when the slot's worker retires (recycling, a rolling restart).
// A long-lived exchange ends itself on either, so the drain does not wait for it.
func (p *Pool) Retiring(s *Slot) (pool, worker <-chan struct{}) {
	return p.state.Entered(poolDraining), s.worker.state.Entered(workerRetiring)
}

// Draining reports whether Stop has begun: the pool serves what still comes, then stops.
func (p *Pool) Draining() bool { return p.state.Get() >= poolDraining }

// Config returns the effective configuration.
func (p *Pool) Config() Config { return p.cfg }

// Start launches the supervisors, one per worker position.
func (p *Pool) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.startPositionsLocked(p.cfg.Workers)
	if p.cfg.MaxWorkers > p.cfg.Workers {
		ctx, cancel := context.WithCancelCause(context.Background())
		p.background = append(p.background, cancel)
		p.wg.Add(1)
		go p.autoscale(ctx)
	}
	if p.cfg.Reload {
		ctx, cancel := context.WithCancelCause(context.Background())
		p.background = append(p.background, cancel)
		p.wg.Add(1)
		go p.watchCode(ctx, p.cfg.Chdir)
	}
}

func (p *Pool) startPositionsLocked(n int) {
	for len(p.positions) < n {
		ctx, cancel := context.WithCancelCause(context.Background())
		p.positions = append(p.positions, cancel)
		p.wg.Add(1)
		go p.supervise(ctx, len(p.positions)-1)
	}
}

// WaitReady blocks until a worker is ready or the first boot failed, or ctx ends.
// It reports whether a worker is serving.
func (p *Pool) WaitReady(ctx context.Context) bool {
	select {
	case <-p.state.Entered(poolReady):
	case <-p.state.Entered(poolFailing):
	case <-ctx.Done():
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.workers) > 0
}

// addWorker makes a ready worker's slots available.
func (p *Pool) addWorker(w *worker) {
	p.mu.Lock()
	p.endSpawnLocked(w.codeGen) // in the same step as it joins: see spawn
	w.state.To(workerReady)
	p.workers[w] = struct{}{}
	p.state.To(poolReady)
	for _, s := range w.slots {
		p.offerLocked(s)
	}
	p.mu.Unlock()
}

// failingLocked reports whether requests get ErrUnavailable at once instead of
// queueing. A draining pool has left the failing state, so there it is worked out: a
// failing app being replaced must not hold its requests (and the drain) in the queue.
func (p *Pool) failingLocked() bool {
	switch p.state.Get() {
	case poolFailing:
		return true
	case poolDraining:
		return len(p.workers) == 0 && p.bootErrs > 0
	}
	return false
}

// removeWorker takes w out of dispatch, moving it to state to (retiring, or stopped
// when it is about to be killed): its idle slots go, busy ones are not put back.
func (p *Pool) removeWorker(w *worker, to workerState) {
	p.mu.Lock()
	w.state.To(to) // with the delete, in one step: who waits for the state sees it gone
	delete(p.workers, w)
	w.idle = nil
	p.mu.Unlock()
}

// LastBootError is the latest failure to start a worker, or nil.
func (p *Pool) LastBootError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

func (p *Pool) setBootError(err error) {
	p.mu.Lock()
	p.lastErr = err
	p.mu.Unlock()
}

// bootFailed records a failed boot; when nothing runs, queued requests get 503 now
// instead of waiting out the queue timeout.
func (p *Pool) bootFailed(failed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if failed {
		p.bootErrs++
	} else {
		p.bootErrs--
	}
	if len(p.workers) == 0 && p.bootErrs > 0 {
		p.state.To(poolFailing) // also the end of WaitReady for a first boot that failed
		for wt := p.waiters.pop(); wt != nil; wt = p.waiters.pop() {
			wt.ch <- nil
		}
	} else if p.state.Is(poolFailing) {
		p.state.To(poolReady) // requests wait for the worker that is booting again
	}
}

// Stop stops taking requests, lets running ones finish within GracefulTimeout (or until
// ctx ends), then stops every worker and waits for the processes to exit.
func (p *Pool) Stop(ctx context.Context) error {
	p.mu.Lock()
	draining := p.state.To(poolDraining) // long-lived exchanges (WebSockets) are asked to end now
	p.mu.Unlock()
	if !draining {
		return nil
	}
	p.drain(ctx)
	p.mu.Lock()
	p.state.To(poolStopped)
	for wt := p.waiters.pop(); wt != nil; wt = p.waiters.pop() {
		wt.ch <- nil
	}
	positions := append(p.positions, p.background...)
	p.positions, p.background = nil, nil
	p.mu.Unlock()
	for _, cancel := range positions {
		cancel(ErrClosed)
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		p.retireZygote()
		return nil
	case <-time.After(p.cfg.GracefulTimeout + 10*time.Second):
		return fmt.Errorf("worker pool for %s: supervisors did not stop", p.cfg.App)
	}
}

// drainQuiet: a pool being stopped keeps serving until no request has been inside the
// handler for this long. During a reload Caddy's old server still finishes the requests
// it accepted (and reads their bodies) after the old config is cleaned up: they must be
// served, not refused.
const drainQuiet = 100 * time.Millisecond

// Enter and Leave bracket a request in the handler, from before its body is read.
func (p *Pool) Enter() {
	p.entered.Add(1)
	p.lastEnter.Store(time.Now().UnixNano())
}

// Leave ends what Enter started.
func (p *Pool) Leave() { p.entered.Add(-1) }

// drain waits, within GracefulTimeout, until requests stop coming and running ones end.
func (p *Pool) drain(ctx context.Context) {
	deadline := time.Now().Add(p.cfg.GracefulTimeout)
	for {
		quiet := time.Since(time.Unix(0, p.lastEnter.Load())) >= drainQuiet
		if p.entered.Load() == 0 && quiet {
			return
		}
		if time.Now().After(deadline) {
			p.log.Warn("graceful timeout: stopping workers with requests still running", zap.Int64("requests", p.entered.Load()))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}
