package workerpool

import (
	"context"
	"time"

	"go.uber.org/zap"
)

const (
	scaleTick = 250 * time.Millisecond
	// A request that waited this long in the queue asks for another worker.
	scaleUpWait = 500 * time.Millisecond
	// Below this share of idle CPU another worker would only add contention.
	minIdleCPU = 0.10
)

// autoscale adds workers while requests queue and the CPU has room, and retires workers
// the load has not needed for IdleTimeout, between Workers and MaxWorkers.
func (p *Pool) autoscale(ctx context.Context) {
	defer p.wg.Done()
	tick := time.NewTicker(scaleTick)
	defer tick.Stop()
	var cpu cpuSampler
	cpu.idleShare()
	lastNeeded := time.Now() // the last time every worker was needed
	lastUp := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.mu.Lock()
		n := len(p.positions)
		oldest := p.waiters.oldest()
		busy := 0
		for w := range p.workers {
			busy += w.busy
		}
		closed := p.state.Is(poolStopped)
		p.mu.Unlock()
		if closed {
			return
		}
		idleCPU := cpu.idleShare()
		now := time.Now()
		if busy > (n-1)*p.cfg.Threads || !oldest.IsZero() {
			lastNeeded = now
		}
		switch {
		case !oldest.IsZero() && now.Sub(oldest) > scaleUpWait && n < p.cfg.MaxWorkers &&
			idleCPU >= minIdleCPU && now.Sub(lastUp) > p.cfg.BootTimeout/10:
			p.log.Info("scaling up", zap.Int("workers", n+1), zap.Duration("queue_wait", now.Sub(oldest)), zap.Float64("idle_cpu", idleCPU))
			p.Scale(n + 1)
			lastUp, lastNeeded = now, now
		case n > p.cfg.Workers && now.Sub(lastNeeded) > p.cfg.IdleTimeout:
			p.log.Info("scaling down", zap.Int("workers", n-1))
			p.Scale(n - 1)
			lastNeeded = now
		}
	}
}

// cpuSampler reports the machine's idle CPU share between two calls.
type cpuSampler struct{ idle, total uint64 }

func (c *cpuSampler) idleShare() float64 {
	idle, total, ok := cpuTimes()
	if !ok {
		return 1 // unknown: do not block scaling
	}
	di, dt := idle-c.idle, total-c.total
	c.idle, c.total = idle, total
	if dt == 0 {
		return 1
	}
	return float64(di) / float64(dt)
}
