package workerpool

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
)

// Backoff between failed boots or early deaths: 100ms doubling up to 5s, so a broken
// deploy does not spin, and a fixed one is picked up within seconds.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
	// A worker that lived this long is healthy: its death resets the backoff.
	stableAfter = 10 * time.Second
	// How often a worker's memory is checked against max_rss.
	rssInterval = time.Second
)

// Restart reasons, as logged and counted.
const (
	ReasonCrash       = "crash"
	ReasonTimeout     = "timeout"
	ReasonMaxRequests = "max_requests"
	ReasonMaxLifetime = "max_lifetime"
	ReasonMaxRSS      = "max_rss"
	ReasonRestart     = "restart"
	ReasonReload      = "reload"
	ReasonScale       = "scale"
	ReasonBroken      = "protocol_error"
)

func backoff(failures int) time.Duration {
	d := backoffMin
	for i := 1; i < failures && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// requestLimit draws a worker's max_requests with its jitter.
func (p *Pool) requestLimit() int64 {
	if p.cfg.MaxRequests <= 0 {
		return 0
	}
	return p.cfg.MaxRequests + rand.Int64N(p.cfg.MaxRequestsJitter+1)
}

// lifetime draws a worker's max_lifetime with its jitter; nil channel when unlimited.
func (p *Pool) lifetime() <-chan time.Time {
	if p.cfg.MaxLifetime <= 0 {
		return nil
	}
	return time.After(p.cfg.MaxLifetime + rand.N(p.cfg.MaxLifetimeJitter+1))
}

// supervisor keeps one worker position filled until its context ends.
type supervisor struct {
	p           *Pool
	position    int
	log         *zap.Logger
	failures    int
	bootFailing bool
}

func (p *Pool) supervise(ctx context.Context, position int) {
	defer p.wg.Done()
	s := &supervisor{p: p, position: position, log: p.log.With(zap.Int("position", position))}
	defer s.setBootFailing(false)
	w := s.boot(ctx)
	if w == nil {
		return
	}
	var rssTick <-chan time.Time
	if p.cfg.MaxRSS > 0 {
		t := time.NewTicker(rssInterval)
		defer t.Stop()
		rssTick = t.C
	}
	expire := p.lifetime()
	for {
		select {
		case <-w.exited:
			p.removeWorker(w, workerStopped)
			reason := ReasonCrash
			if r := w.stopReason.Load(); r != nil {
				reason = *r
			}
			p.countRestart(reason)
			if time.Since(w.started) < stableAfter && reason == ReasonCrash {
				s.failures++
			} else {
				s.failures = 0
			}
			fields := []zap.Field{zap.Int("pid", w.pid), zap.String("status", exitStatus(w.exitErr)), zap.String("reason", reason)}
			if reason == ReasonCrash {
				if stacks := w.crashDump(); stacks != "" {
					fields = append(fields, zap.String("stacks", stacks)) // faulthandler's, on SIGSEGV/SIGABRT
				}
			}
			s.log.Warn("worker exited; replacing it", fields...)
			p.closeDeadWorker(w)
			if w = s.boot(ctx); w == nil {
				return
			}
			expire = p.lifetime()
		case reason := <-w.recycle:
			// Start the replacement first: the old worker serves until the new one is ready.
			nw, err := p.spawn()
			if err != nil {
				s.log.Error("cannot start a replacement worker; keeping the old one", zap.String("reason", reason), zap.Error(err))
				if reason == ReasonRestart || reason == ReasonReload {
					// Asked for (a deploy): Restart reports the failure; no retry behind its back.
					select {
					case w.recycleErr <- err:
					default:
					}
					continue
				}
				go func(w *worker) { // try again later
					select {
					case <-time.After(backoffMax):
						w.requestRecycle(reason)
					case <-ctx.Done():
					}
				}(w)
				continue
			}
			s.log.Info("recycling worker", zap.Int("pid", w.pid), zap.Int("new_pid", nw.pid), zap.String("reason", reason))
			p.addWorker(nw)
			p.countRestart(reason)
			go p.retire(w, reason)
			w = nw
			expire = p.lifetime()
		case <-rssTick:
			if rss := processRSS(w.pid); rss > p.cfg.MaxRSS {
				s.log.Info("worker passed max_rss", zap.Int("pid", w.pid), zap.Int64("rss", rss), zap.Int64("max_rss", p.cfg.MaxRSS))
				w.requestRecycle(ReasonMaxRSS)
			}
		case <-expire:
			expire = nil
			w.requestRecycle(ReasonMaxLifetime)
		case <-ctx.Done():
			reason := "stop"
			if errors.Is(context.Cause(ctx), errScaledDown) {
				reason = ReasonScale
				p.countRestart(reason)
				s.log.Info("scaling down: retiring worker", zap.Int("pid", w.pid))
			}
			p.retire(w, reason)
			return
		}
	}
}

func (s *supervisor) setBootFailing(v bool) {
	if v != s.bootFailing {
		s.bootFailing = v
		s.p.bootFailed(v)
	}
}

// boot starts a worker, retrying with backoff; nil when ctx ends first.
func (s *supervisor) boot(ctx context.Context) *worker {
	for ctx.Err() == nil {
		if s.failures > 0 {
			wait := backoff(s.failures)
			s.log.Info("restarting worker after backoff", zap.Duration("backoff", wait), zap.Int("consecutive_failures", s.failures))
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return nil
			}
		}
		start := time.Now()
		w, err := s.p.spawn()
		if err != nil {
			s.failures++
			s.p.setBootError(err)
			var be *BootError
			if errors.As(err, &be) {
				s.log.Error("worker failed to import the app", zap.String("error", be.Error()), zap.String("traceback", be.Traceback))
			} else {
				s.log.Error("worker failed to start", zap.Error(err))
			}
			s.setBootFailing(true)
			continue
		}
		s.setBootFailing(false)
		s.log.Info("worker ready", zap.Int("pid", w.pid), zap.Duration("boot", time.Since(start)))
		if ctx.Err() != nil {
			s.p.endSpawn(w.codeGen) // booted but turned away
			s.p.retire(w, "stop")
			return nil
		}
		s.p.addWorker(w)
		return w
	}
	return nil
}

// retire takes w out of dispatch, lets its running requests finish within
// GracefulTimeout, then stops it.
func (p *Pool) retire(w *worker, reason string) {
	w.stopReason.Store(&reason)
	p.removeWorker(w, workerRetiring)
	grace := p.cfg.GracefulTimeout
	if reason == "stop" {
		grace = 0 // Stop already spent the grace period draining the pool
	}
	if busy := p.awaitDrained(w, grace); busy > 0 {
		// Past the grace period: like Gunicorn, do not wait any longer.
		p.log.Warn("graceful timeout: killing a worker with requests still running", zap.Int("pid", w.pid), zap.Int("running", busy))
		w.kill()
	} else {
		w.terminate(p.cfg.WorkerClass.retireGrace(p.cfg.GracefulTimeout))
	}
	select {
	case <-w.exited:
	case <-time.After(3 * time.Second):
		p.log.Warn("worker ignored SIGTERM; killing it", zap.Int("pid", w.pid))
		w.kill()
		<-w.exited
	}
	p.closeDeadWorker(w)
}

// awaitDrained waits up to grace for w's running requests to end (Release closes
// w.drained after the last one) and returns how many still run.
func (p *Pool) awaitDrained(w *worker, grace time.Duration) (busy int) {
	p.mu.Lock()
	if w.busy == 0 || grace <= 0 {
		defer p.mu.Unlock()
		return w.busy
	}
	drained := make(chan struct{})
	w.drained = drained
	p.mu.Unlock()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-drained:
	case <-timer.C:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	w.drained = nil
	return w.busy
}

// closeDeadWorker closes an exited worker's channels. A channel still leased is left to
// its exchange, which may have a complete response left to read (the worker can exit
// right after answering, with pipelining): Release closes it.
func (p *Pool) closeDeadWorker(w *worker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w.state.To(workerStopped)
	delete(p.live, w)
	for _, s := range w.slots {
		if s.since.IsZero() && len(s.queued) == 0 {
			s.conn.Close()
		}
	}
	if w.dump != nil {
		w.dump.Close()
	}
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
