package workerpool

import (
	"context"
	"errors"
	"fmt"
	"time"
)

var errScaledDown = errors.New("scaled down")

// Restart replaces every worker, one at a time: each new worker is ready before the one
// it replaces stops taking requests, so no request fails. A worker still importing when
// Restart begins may have read the old code, so it is replaced too once it is ready.
// reason is logged and counted (ReasonRestart, ReasonReload). When a replacement cannot
// start (the new code fails to import), the remaining old workers keep serving and the
// error is returned. The count is of the workers replaced.
func (p *Pool) Restart(ctx context.Context, reason string) (int, error) {
	if p.cfg.Preload {
		p.retireZygote() // the replacements fork from a zygote that imports the code anew
	}
	p.mu.Lock()
	p.codeGen++
	gen := p.codeGen
	p.mu.Unlock()
	replaced := 0
	for {
		old, booting := p.olderThan(gen)
		if len(old) == 0 && !booting {
			return replaced, nil
		}
		if len(old) == 0 { // wait for the boot to finish, then replace it
			select {
			case <-ctx.Done():
				return replaced, ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		for _, w := range old {
			if err := p.replace(ctx, w, reason); err != nil {
				return replaced, err
			}
			replaced++
		}
	}
}

// olderThan lists the serving workers that booted before codeGen gen, and says whether
// such a boot is still in progress.
func (p *Pool) olderThan(gen uint64) (old []*worker, booting bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for w := range p.workers {
		if w.codeGen < gen && !w.leaving() { // a retiring one is replaced already
			old = append(old, w)
		}
	}
	for g, n := range p.spawning {
		booting = booting || (g < gen && n > 0)
	}
	return old, booting
}

// replace asks w's supervisor for a replacement and waits until w left dispatch: its
// replacement is then serving.
func (p *Pool) replace(ctx context.Context, w *worker, reason string) error {
	select {
	case <-w.recycleErr: // left by a Restart that gave up waiting
	default:
	}
	w.requestRecycle(reason)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-w.recycleErr:
		return fmt.Errorf("restart stopped, the old workers keep serving: %w", err)
	case <-w.state.Entered(workerRetiring):
	case <-w.state.Entered(workerStopped):
	}
	return nil
}

func (p *Pool) beginSpawn() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.spawning[p.codeGen]++
	return p.codeGen
}

func (p *Pool) endSpawn(gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endSpawnLocked(gen)
}

func (p *Pool) endSpawnLocked(gen uint64) {
	if p.spawning[gen]--; p.spawning[gen] <= 0 {
		delete(p.spawning, gen)
	}
}

// Scale sets the number of worker processes. New ones start at once; removed ones
// finish their requests first.
func (p *Pool) Scale(n int) error {
	if n < 1 || n > 1024 {
		return fmt.Errorf("worker count %d is not between 1 and 1024", n)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state.Is(poolStopped) {
		return ErrClosed
	}
	for len(p.positions) > n {
		last := len(p.positions) - 1
		p.positions[last](errScaledDown)
		p.positions = p.positions[:last]
	}
	p.startPositionsLocked(n)
	return nil
}
