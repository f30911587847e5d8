package caddymodule

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-wsgi/caddy-wsgi/workerpool"
)

// pools holds the running worker pools by their settings, so that a config reload that
// leaves a wsgi block unchanged keeps its warm workers (the pattern of reverseproxy's
// hosts). It is the one piece of package state, and it must be: pools outlive any
// single config, and the admin API and metrics find them here.
var pools = caddy.NewUsagePool()

// live lists every pool from its start until it has stopped, draining ones included
// (the usage pool forgets a pool before stopping it), for the admin API and metrics.
var live = struct {
	sync.Mutex
	pools map[*poolHolder]struct{}
}{pools: map[*poolHolder]struct{}{}}

// poolHolder is a pool with what the Caddy side keeps about it.
type poolHolder struct {
	name    string
	created time.Time
	pool    *workerpool.Pool
	metrics *poolMetrics
}

func newPoolHolder(name string, pool *workerpool.Pool) *poolHolder {
	h := &poolHolder{name: name, created: time.Now(), pool: pool, metrics: newPoolMetrics(name)}
	live.Lock()
	live.pools[h] = struct{}{}
	live.Unlock()
	return h
}

// Destruct stops the pool when its last config goes away: running requests may
// finish within graceful_timeout.
func (h *poolHolder) Destruct() error {
	err := h.pool.Stop(context.Background())
	live.Lock()
	delete(live.pools, h)
	live.Unlock()
	return err
}

// listPools returns every pool, oldest first (so the newest wins a name clash).
func listPools() []*poolHolder {
	live.Lock()
	out := make([]*poolHolder, 0, len(live.pools))
	for h := range live.pools {
		out = append(out, h)
	}
	live.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].created.Before(out[j].created) })
	return out
}

// findPool returns the serving pool with that name; during a reload the new one.
func findPool(name string) (*poolHolder, bool) {
	var found *poolHolder
	ok := false
	for _, h := range listPools() {
		if h.name == name && !h.pool.Draining() {
			found, ok = h, true
		}
	}
	return found, ok
}
