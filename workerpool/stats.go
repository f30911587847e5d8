package workerpool

import (
	"sort"
	"time"
)

// WorkerStats describes one worker process.
type WorkerStats struct {
	PID        int       `json:"pid"`
	State      string    `json:"state"`     // idle, busy
	Lifecycle  string    `json:"lifecycle"` // booting, ready, busy, retiring, stopped
	Busy       int       `json:"busy_threads"`
	Requests   int64     `json:"requests"`
	Started    time.Time `json:"started"`
	RSS        int64     `json:"rss_bytes"`
	Current    []Current `json:"current,omitempty"`
	MaxRequest int64     `json:"max_requests,omitempty"`
}

// Current is a request a worker thread is running.
type Current struct {
	Request string  `json:"request"`
	AgeSecs float64 `json:"age_seconds"`
}

// Stats is a snapshot of a pool.
type Stats struct {
	App         string           `json:"app"`
	Lifecycle   string           `json:"lifecycle"` // starting, ready, failing, draining, stopped
	Positions   int              `json:"workers_wanted"`
	Threads     int              `json:"threads"`
	BusyThreads int              `json:"busy_threads"`
	QueueDepth  int              `json:"queue_depth"`
	Pipelined   int              `json:"pipelined"` // requests already written behind a running one
	Failing     bool             `json:"failing"`
	Restarts    map[string]int64 `json:"restarts"`
	Workers     []WorkerStats    `json:"workers"` // the workers taking requests
	// Workers out of dispatch: booting, or retiring (recycled, restarted, scaled down)
	// and not yet gone.
	OtherWorkers []WorkerStats `json:"other_workers,omitempty"`
}

// Stats returns a snapshot for the admin API and metrics.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	st := Stats{
		App: p.cfg.App, Lifecycle: p.state.Get().String(), Positions: len(p.positions), Threads: p.cfg.Threads,
		QueueDepth: p.waiters.len(), Failing: p.failingLocked(), Restarts: map[string]int64{},
	}
	for k, v := range p.restarts {
		st.Restarts[k] = v
	}
	workers := make([]*worker, 0, len(p.workers))
	busy := map[*worker]int{}
	for w := range p.workers {
		workers = append(workers, w)
		for _, s := range w.slots {
			if !s.since.IsZero() {
				busy[w]++ // running; requests pipelined behind it are counted apart
			}
			st.Pipelined += len(s.queued)
		}
		st.BusyThreads += busy[w]
	}
	var others []*worker
	for w := range p.live {
		if _, serving := p.workers[w]; !serving {
			others = append(others, w)
			busy[w] = w.busy
		}
	}
	p.mu.Unlock()

	st.Workers = workerStats(workers, busy)
	st.OtherWorkers = workerStats(others, busy)
	return st
}

// workerStats describes workers, oldest first.
func workerStats(workers []*worker, busy map[*worker]int) []WorkerStats {
	var out []WorkerStats
	now := time.Now()
	for _, w := range workers {
		ws := WorkerStats{PID: w.pid, State: "idle", Busy: busy[w], Requests: w.served.Load(),
			Started: w.started, RSS: processRSS(w.pid), MaxRequest: w.maxRequests}
		if ws.Busy > 0 {
			ws.State = "busy"
		}
		ws.Lifecycle = w.state.Get().String()
		if w.state.Is(workerReady) && ws.Busy > 0 {
			ws.Lifecycle = "busy" // not a transition: a request costs none
		}
		for _, s := range w.slots {
			if a := s.current.Load(); a != nil {
				ws.Current = append(ws.Current, Current{Request: a.Request, AgeSecs: now.Sub(a.Since).Seconds()})
			}
		}
		out = append(out, ws)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}
