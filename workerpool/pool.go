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

// Slot is one worker thread's channel, handed to exactly one request at a time.
type Slot struct {
	conn    *protocol.Conn
	worker  *worker
	current atomic.Pointer[Activity]
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

	wg        sync.WaitGroup            // supervisors
	positions []context.CancelCauseFunc // one per worker position; guarded by mu
	restarts  map[string]int64          // by reason; guarded by mu
	zmu       sync.Mutex
	zyg       *zygote // with Preload: the running zygote, started on first use
	// background tasks (code watcher, autoscaler), stopped with the pool
	background []context.CancelCauseFunc

	mu       sync.Mutex
	idle     []*Slot
	waiters  waitQueue
	workers  map[*worker]struct{}
	failing  bool // the latest boot of every position failed and none is running
	bootErrs int  // positions whose latest boot failed
	lastErr  error
	closed   bool
	inflight sync.WaitGroup
	ready    chan struct{} // closed at the first READY or the first boot failure
	readyOne sync.Once
}

// New validates cfg and returns a pool that is not started yet.
func New(cfg Config) (*Pool, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	python, _ := cfg.Interpreter()
	return &Pool{
		cfg:      cfg,
		log:      cfg.Logger.With(zap.String("app", cfg.App)),
		python:   python,
		env:      workerEnv(cfg),
		workers:  make(map[*worker]struct{}),
		restarts: make(map[string]int64),
		ready:    make(chan struct{}),
	}, nil
}

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
	case <-p.ready:
	case <-ctx.Done():
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.workers) > 0
}

func (p *Pool) markReady() { p.readyOne.Do(func() { close(p.ready) }) }

// Acquire returns an idle slot, waiting in the queue up to QueueTimeout.
func (p *Pool) Acquire(ctx context.Context) (*Slot, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if s := p.takeIdleLocked(); s != nil {
		p.inflight.Add(1)
		p.mu.Unlock()
		return s, nil
	}
	if p.failing {
		p.mu.Unlock()
		return nil, ErrUnavailable
	}
	if p.waiters.len() >= p.cfg.MaxQueue {
		p.mu.Unlock()
		return nil, ErrQueueFull
	}
	w := &waiter{ch: make(chan *Slot, 1), since: time.Now()}
	p.waiters.push(w)
	p.mu.Unlock()

	timer := time.NewTimer(p.cfg.QueueTimeout)
	defer timer.Stop()
	var err error
	select {
	case s := <-w.ch:
		return p.handed(s)
	case <-timer.C:
		err = ErrQueueTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.mu.Lock()
	removed := p.waiters.remove(w)
	p.mu.Unlock()
	if !removed {
		// A slot (or a refusal) was handed over while we gave up: take it after all.
		return p.handed(<-w.ch)
	}
	return nil, err
}

// handed turns what a waiter received into Acquire's result; nil means the pool failed.
func (p *Pool) handed(s *Slot) (*Slot, error) {
	if s == nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closed {
			return nil, ErrClosed
		}
		return nil, ErrUnavailable
	}
	return s, nil
}

// takeIdleLocked picks an idle slot of the least busy worker.
func (p *Pool) takeIdleLocked() *Slot {
	best := -1
	for i := len(p.idle) - 1; i >= 0; i-- {
		s := p.idle[i]
		if best < 0 || s.worker.busy < p.idle[best].worker.busy {
			best = i
			if s.worker.busy == 0 {
				break
			}
		}
	}
	if best < 0 {
		return nil
	}
	s := p.idle[best]
	p.idle = append(p.idle[:best], p.idle[best+1:]...)
	s.worker.busy++
	return s
}

// Release gives a slot back. healthy=false means its channel can no longer be trusted
// (a protocol violation or an I/O error): the worker is killed and replaced.
func (p *Pool) Release(s *Slot, healthy bool) {
	w := s.worker
	s.current.Store(nil)
	served := w.served.Add(1)
	if !healthy && !w.dead.Load() {
		p.log.Warn("killing worker after a broken exchange", zap.Int("pid", w.pid))
		reason := ReasonBroken
		w.stopReason.CompareAndSwap(nil, &reason)
		w.kill()
	} else if w.maxRequests > 0 && served == w.maxRequests {
		w.requestRecycle(ReasonMaxRequests)
	}
	p.mu.Lock()
	w.busy--
	if !w.dead.Load() {
		p.offerLocked(s)
	}
	p.mu.Unlock()
	p.inflight.Done()
}

// offerLocked hands s to the first waiter, or puts it on the idle list.
func (p *Pool) offerLocked(s *Slot) {
	if wt := p.waiters.pop(); wt != nil {
		s.worker.busy++
		p.inflight.Add(1)
		wt.ch <- s
		return
	}
	p.idle = append(p.idle, s)
}

// addWorker makes a ready worker's slots available.
func (p *Pool) addWorker(w *worker) {
	p.mu.Lock()
	p.workers[w] = struct{}{}
	p.failing = false
	for _, s := range w.slots {
		p.offerLocked(s)
	}
	p.mu.Unlock()
	p.markReady()
}

// removeWorker takes w out of dispatch: its idle slots go, busy ones are not put back.
func (p *Pool) removeWorker(w *worker) {
	w.dead.Store(true)
	p.mu.Lock()
	delete(p.workers, w)
	kept := p.idle[:0]
	for _, s := range p.idle {
		if s.worker != w {
			kept = append(kept, s)
		}
	}
	for i := len(kept); i < len(p.idle); i++ {
		p.idle[i] = nil
	}
	p.idle = kept
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
	p.failing = len(p.workers) == 0 && p.bootErrs > 0
	if p.failing {
		for wt := p.waiters.pop(); wt != nil; wt = p.waiters.pop() {
			wt.ch <- nil
		}
	}
	if failed {
		p.markReady()
	}
}

// Stop stops taking requests, lets running ones finish within GracefulTimeout (or until
// ctx ends), then stops every worker and waits for the processes to exit.
func (p *Pool) Stop(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for wt := p.waiters.pop(); wt != nil; wt = p.waiters.pop() {
		wt.ch <- nil
	}
	positions := append(p.positions, p.background...)
	p.positions, p.background = nil, nil
	p.mu.Unlock()

	drained := make(chan struct{})
	go func() { p.inflight.Wait(); close(drained) }()
	grace := time.NewTimer(p.cfg.GracefulTimeout)
	defer grace.Stop()
	select {
	case <-drained:
	case <-grace.C:
		p.log.Warn("graceful timeout: stopping workers with requests still running")
	case <-ctx.Done():
	}
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
