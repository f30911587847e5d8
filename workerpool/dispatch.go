package workerpool

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// Pipelining: when every worker thread is busy, a small request may be written to a
// busy thread's channel at once, so the worker finds it waiting when it finishes and does
// not sleep and wake per request (the wake-up costs more than a small request's Python
// work). It only happens while exchanges are short (the smoothed service time is below
// pipelineMaxService), and only behind an exchange that is not older than a few service
// times, so a request never waits long behind a slow one.
const (
	pipelineMaxService = 5 * time.Millisecond
	pipelineSlack      = 500 * time.Microsecond
	pipelineDepth      = 4 // requests queued behind the running one, per thread (2 cost 16 % more CPU per hello-world request, BenchmarkBridge)
)

// Lease is the right to run one exchange on a slot. A queued lease's REQUEST may be
// written at once; its frames may be read only after Wait.
type Lease struct {
	Slot        *Slot
	Order       uint64        // position of its REQUEST on the slot: pass to Send and Cancel
	turn        chan struct{} // nil for a lease that runs at once
	retry       bool          // set before turn closes: the exchange ahead failed, ours never ran
	pipelinable bool
}

// Queued reports whether the lease waits behind the slot's running exchange.
func (l *Lease) Queued() bool { return l.turn != nil }

// Wait blocks until the lease may read its frames. retry means the exchange ahead of it
// broke the channel, so this request never reached the app: acquire again.
func (l *Lease) Wait() (retry bool) {
	if l.turn != nil {
		<-l.turn
	}
	return l.retry
}

// Acquire returns a lease on a worker thread: an idle one (of the least busy worker), a
// queued place behind a short running exchange when pipelinable, or, after waiting in the
// FIFO queue up to QueueTimeout, the first one to free up. pipelinable: the request's
// body is complete in its REQUEST frame.
func (p *Pool) Acquire(ctx context.Context, pipelinable bool) (*Lease, error) {
	p.mu.Lock()
	if p.state.Is(poolStopped) {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if l := p.takeIdleLocked(pipelinable); l != nil {
		p.mu.Unlock()
		return l, nil
	}
	if p.failingLocked() {
		p.mu.Unlock()
		return nil, ErrUnavailable
	}
	if pipelinable && p.waiters.len() == 0 {
		if l := p.queueBehindLocked(); l != nil {
			p.mu.Unlock()
			return l, nil
		}
	}
	if p.waiters.len() >= p.cfg.MaxQueue {
		p.mu.Unlock()
		return nil, ErrQueueFull
	}
	w := &waiter{ch: make(chan *Lease, 1), since: time.Now(), pipelinable: pipelinable}
	p.waiters.push(w)
	p.mu.Unlock()

	timer := time.NewTimer(p.cfg.QueueTimeout)
	defer timer.Stop()
	var err error
	select {
	case l := <-w.ch:
		return p.handed(l)
	case <-timer.C:
		err = ErrQueueTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.mu.Lock()
	removed := p.waiters.remove(w)
	p.mu.Unlock()
	if !removed {
		// A lease (or a refusal) was handed over while we gave up: take it after all.
		return p.handed(<-w.ch)
	}
	return nil, err
}

// handed turns what a waiter received into Acquire's result; nil means the pool failed.
func (p *Pool) handed(l *Lease) (*Lease, error) {
	if l == nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.state.Is(poolStopped) {
			return nil, ErrClosed
		}
		return nil, ErrUnavailable
	}
	return l, nil
}

// takeIdleLocked leases an idle slot of the least busy worker: the slot it released
// last, whose buffers are warm. The cost grows with the workers, not with their slots (an
// ASGI worker has a thousand).
func (p *Pool) takeIdleLocked(pipelinable bool) *Lease {
	var best *worker
	for w := range p.workers {
		if len(w.idle) > 0 && (best == nil || w.busy < best.busy) {
			best = w
			if w.busy == 0 {
				break
			}
		}
	}
	if best == nil {
		return nil
	}
	s := best.idle[len(best.idle)-1]
	best.idle[len(best.idle)-1] = nil
	best.idle = best.idle[:len(best.idle)-1]
	return p.activateLocked(s, pipelinable)
}

func (p *Pool) activateLocked(s *Slot, pipelinable bool) *Lease {
	s.worker.busy++
	s.since, s.pipelinable = time.Now(), pipelinable
	s.ordered++
	return &Lease{Slot: s, Order: s.ordered, pipelinable: pipelinable}
}

// queueBehindLocked leases a place behind the running exchange most likely to end
// first, if pipelining pays off now.
func (p *Pool) queueBehindLocked() *Lease {
	if p.ewma >= pipelineMaxService {
		return nil
	}
	limit := 2*p.ewma + pipelineSlack
	now := time.Now()
	var best *Slot
	for w := range p.workers {
		if w.leaving() {
			continue
		}
		for _, s := range w.slots {
			if len(s.queued) >= pipelineDepth || !s.pipelinable || s.since.IsZero() || now.Sub(s.since) > limit {
				continue
			}
			if best == nil || len(s.queued) < len(best.queued) ||
				len(s.queued) == len(best.queued) && s.since.Before(best.since) {
				best = s
			}
		}
	}
	if best == nil {
		return nil
	}
	return p.queueLocked(best)
}

func (p *Pool) queueLocked(s *Slot) *Lease {
	s.ordered++
	l := &Lease{Slot: s, Order: s.ordered, turn: make(chan struct{}), pipelinable: true}
	s.queued = append(s.queued, l)
	s.worker.busy++
	return l
}

// Release ends the lease's exchange. healthy=false means the channel can no longer be
// trusted (a protocol violation, an I/O error, a timeout): the worker is killed and
// replaced, and a lease queued behind this one is told to retry elsewhere.
func (p *Pool) Release(l *Lease, healthy bool) {
	s := l.Slot
	w := s.worker
	s.current.Store(nil)
	served := w.served.Add(1)
	if !healthy && !w.leaving() {
		p.removeWorker(w, workerStopped) // about to be killed
		p.log.Warn("killing worker after a broken exchange", zap.Int("pid", w.pid))
		reason := ReasonBroken
		w.stopReason.CompareAndSwap(nil, &reason)
		w.kill()
	} else if w.maxRequests > 0 && served == w.maxRequests {
		w.requestRecycle(ReasonMaxRequests)
	}
	now := time.Now()
	p.mu.Lock()
	if healthy {
		p.ewma += (now.Sub(s.since) - p.ewma) / 8
	}
	w.busy--
	if len(s.queued) > 0 && healthy {
		// The worker already has the next REQUEST: it runs now, on the same slot.
		next := s.queued[0]
		s.queued = append(s.queued[:0], s.queued[1:]...)
		s.since, s.pipelinable = now, next.pipelinable
		close(next.turn)
		p.refillLocked(s)
	} else if !w.leaving() {
		s.since = time.Time{}
		p.offerLocked(s)
	} else {
		for _, next := range s.queued { // they never ran: their requests go elsewhere
			w.busy--
			next.retry = true
			close(next.turn)
		}
		s.queued = s.queued[:0]
		s.since = time.Time{}
		if exited(w) {
			s.conn.Close() // the last exchange on a dead worker's channel
		}
	}
	if w.busy == 0 && w.drained != nil {
		close(w.drained) // retire waits for it
		w.drained = nil
	}
	p.mu.Unlock()
}

func exited(w *worker) bool {
	select {
	case <-w.exited:
		return true
	default:
		return false
	}
}

// refillLocked queues head waiters behind s's running exchange when pipelining pays.
func (p *Pool) refillLocked(s *Slot) {
	if !s.pipelinable || p.ewma >= pipelineMaxService || s.worker.leaving() {
		return
	}
	for len(s.queued) < pipelineDepth {
		w := p.waiters.peek()
		if w == nil || !w.pipelinable {
			return
		}
		p.waiters.pop()
		w.ch <- p.queueLocked(s)
	}
}

// offerLocked hands an idle s to the first waiter, or puts it on the idle list.
func (p *Pool) offerLocked(s *Slot) {
	if wt := p.waiters.pop(); wt != nil {
		wt.ch <- p.activateLocked(s, wt.pipelinable)
		p.refillLocked(s) // under load, the next request waits in the worker, not here
		return
	}
	s.worker.idle = append(s.worker.idle, s)
}
