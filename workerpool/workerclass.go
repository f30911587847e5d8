package workerpool

import (
	"errors"
	"fmt"
	"time"
)

// WorkerClass names how a worker runs the app: "sync" (the default, also spelled ""),
// "gevent" or "asgi". Everything that differs between the classes is answered by its
// methods, each backed by one classTraits value per class (FrankenPHP's threadHandler
// pattern): the rest of the code asks the class instead of comparing names.
type WorkerClass string

// The worker classes. The names are those of the worker_class option and of the JSON the
// runtime reads (PROTOCOL.md).
const (
	ClassSync   WorkerClass = "sync"   // threads serve one request each
	ClassGevent WorkerClass = "gevent" // greenlets on a monkey-patched stdlib, for apps that wait on I/O
	ClassASGI   WorkerClass = "asgi"   // an ASGI 3 app on one asyncio loop
)

// TimeoutPolicy is what happens to a request past its deadline.
type TimeoutPolicy int

const (
	// KillWorker logs the worker's stacks and kills it: a stuck thread cannot be freed.
	KillWorker TimeoutPolicy = iota
	// CancelRequest answers 504 and cancels the request (the app gets http.disconnect):
	// the worker serves many requests on one loop, so it is killed only if its loop stays
	// blocked.
	CancelRequest
)

// AppInterface is the calling convention the gateway speaks to the app.
type AppInterface int

const (
	// WSGIEnviron: CGI-style environ keys (PEP 3333), no WebSockets, no trailers.
	WSGIEnviron AppInterface = iota
	// ASGIScope: headers as received (`~name` pairs), WebSockets and trailers.
	ASGIScope
)

// classTraits is what one worker class decides.
type classTraits struct {
	concurrent     bool // channels are greenlets or tasks, set by WorkerConnections, not Threads
	connections    int  // default WorkerConnections when concurrent
	maxChannels    int  // channels per worker allowed
	limitName      string
	preloadAllowed bool
	lifespan       bool // runs the ASGI lifespan protocol
	timeout        TimeoutPolicy
	shutdownGrace  bool // a retiring worker may take GracefulTimeout to exit (lifespan shutdown)
	app            AppInterface
}

// traits returns the class's traits; ok is false for an unknown name.
func (c WorkerClass) traits() (t classTraits, ok bool) {
	switch c {
	case "", ClassSync:
		return classTraits{maxChannels: 256, limitName: "threads", preloadAllowed: true}, true
	case ClassGevent:
		return classTraits{concurrent: true, connections: 100, maxChannels: 10000,
			limitName: "worker_connections"}, true
	case ClassASGI:
		return classTraits{concurrent: true, connections: 1000, maxChannels: 10000,
			limitName: "worker_connections", preloadAllowed: true, lifespan: true,
			timeout: CancelRequest, shutdownGrace: true, app: ASGIScope}, true
	}
	return classTraits{}, false
}

// must returns the traits of a class Validate accepted (unknown: sync's, never reached).
func (c WorkerClass) must() classTraits {
	t, _ := c.traits()
	return t
}

// defaults gives cfg the class's defaults: the concurrent classes have a channel per
// greenlet or task (WorkerConnections), as sync has one per thread; ASGI runs lifespan.
func (c WorkerClass) defaults(cfg Config) Config {
	t := c.must()
	if t.concurrent {
		if cfg.WorkerConnections <= 0 {
			cfg.WorkerConnections = t.connections
		}
		cfg.Threads = cfg.WorkerConnections
	}
	if t.lifespan && cfg.Lifespan == "" {
		cfg.Lifespan = "auto"
	}
	return cfg
}

// validate checks the settings that depend on the class.
func (c WorkerClass) validate(cfg Config) error {
	t, ok := c.traits()
	if !ok {
		return fmt.Errorf("worker_class %q: want sync or gevent (asgi: use the asgi directive)", string(c))
	}
	if cfg.Preload && !t.preloadAllowed {
		return errors.New("worker_class gevent cannot be combined with preload: gevent must patch before the app is imported, in each worker")
	}
	if cfg.Threads > t.maxChannels {
		return fmt.Errorf("%s %d is more than %d", t.limitName, cfg.Threads, t.maxChannels)
	}
	if !t.concurrent {
		return nil
	}
	if err := checkFileLimit(cfg.Threads); err != nil {
		return err
	}
	if err := ValidateLifespan(cfg.Lifespan); err != nil {
		return err
	}
	if cfg.Lifespan != "" && !t.lifespan {
		return errors.New("lifespan is for ASGI apps")
	}
	return nil
}

// Timeout is the class's policy for a request past its deadline.
func (c WorkerClass) Timeout() TimeoutPolicy { return c.must().timeout }

// App is the calling convention of the class's apps.
func (c WorkerClass) App() AppInterface { return c.must().app }

// retireGrace is how long a retiring worker with no request left has to exit after
// its channels close, before SIGTERM.
func (c WorkerClass) retireGrace(graceful time.Duration) time.Duration {
	grace := time.Second
	if c.must().shutdownGrace {
		grace = max(grace, graceful) // lifespan shutdown
	}
	return grace
}

// ValidateLifespan checks an ASGI lifespan setting ("" is the default, auto).
func ValidateLifespan(lifespan string) error {
	switch lifespan {
	case "", "auto", "on", "off":
		return nil
	}
	return fmt.Errorf("lifespan %q: want auto, on or off", lifespan)
}

// ServesWSGI reports whether c is a known class for WSGI apps (asgi has its own handler).
func (c WorkerClass) ServesWSGI() bool {
	t, ok := c.traits()
	return ok && t.app == WSGIEnviron
}
