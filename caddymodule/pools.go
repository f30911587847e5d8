package caddymodule

import (
	"context"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-wsgi/caddy-wsgi/workerpool"
)

// pools holds the running worker pools by their settings, so that a config reload that
// leaves a wsgi block unchanged keeps its warm workers (the pattern of reverseproxy's
// hosts). It is the one piece of package state, and it must be: pools outlive any
// single config.
var pools = caddy.NewUsagePool()

// poolHolder lets the usage pool stop a worker pool when its last config goes away.
type poolHolder struct{ pool *workerpool.Pool }

// Destruct stops the pool: running requests may finish within graceful_timeout.
func (h poolHolder) Destruct() error { return h.pool.Stop(context.Background()) }
