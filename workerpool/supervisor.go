package workerpool

import (
	"errors"
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
)

func backoff(failures int) time.Duration {
	d := backoffMin
	for i := 1; i < failures && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// supervise keeps one worker position filled until the pool stops.
func (p *Pool) supervise(position int) {
	defer p.wg.Done()
	log := p.log.With(zap.Int("position", position))
	failures := 0
	bootFailing := false
	setBootFailing := func(v bool) {
		if v != bootFailing {
			bootFailing = v
			p.bootFailed(v)
		}
	}
	defer setBootFailing(false)

	for p.ctx.Err() == nil {
		if failures > 0 {
			wait := backoff(failures)
			log.Info("restarting worker after backoff", zap.Duration("backoff", wait), zap.Int("consecutive_failures", failures))
			select {
			case <-time.After(wait):
			case <-p.ctx.Done():
				return
			}
		}
		start := time.Now()
		w, err := p.spawn()
		if err != nil {
			failures++
			var be *BootError
			if errors.As(err, &be) {
				log.Error("worker failed to import the app", zap.String("error", be.Error()), zap.String("traceback", be.Traceback))
			} else {
				log.Error("worker failed to start", zap.Error(err))
			}
			setBootFailing(true)
			continue
		}
		setBootFailing(false)
		log.Info("worker ready", zap.Int("pid", w.pid), zap.Duration("boot", time.Since(start)))
		p.addWorker(w)

		select {
		case <-w.exited:
			p.removeWorker(w)
			w.closeSlots()
			if time.Since(w.started) < stableAfter {
				failures++
			} else {
				failures = 0
			}
			if p.ctx.Err() == nil {
				log.Warn("worker exited; replacing it", zap.Int("pid", w.pid), zap.String("status", exitStatus(w.exitErr)))
			}
		case <-p.ctx.Done():
			p.stopWorker(w)
			return
		}
	}
}

// stopWorker closes the worker's channels (the runtime exits on EOF), then escalates.
func (p *Pool) stopWorker(w *worker) {
	p.removeWorker(w)
	w.terminate()
	select {
	case <-w.exited:
	case <-time.After(3 * time.Second):
		p.log.Warn("worker ignored SIGTERM; killing it", zap.Int("pid", w.pid))
		w.kill()
		<-w.exited
	}
	w.closeSlots()
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
