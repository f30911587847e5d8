// Package caddymodule is the Caddy adapter of caddy-wsgi: the http.handlers.wsgi
// module, its Caddyfile directive, and the pools kept across config reloads. The work
// is done by workerpool and gateway, which do not know about Caddy.
package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-wsgi/caddy-wsgi/gateway"
	"github.com/caddy-wsgi/caddy-wsgi/websocket"
	"github.com/caddy-wsgi/caddy-wsgi/workerpool"
)

// Version is reported in SERVER_SOFTWARE.
const Version = "0.1.0"

func init() {
	caddy.RegisterModule(WSGI{})
}

// WSGI serves a Python WSGI application from a pool of worker processes managed by
// Caddy, in place of Gunicorn behind a reverse proxy. Each worker is a real Python
// interpreter (3.9+, a venv's or any other) running a small stdlib-only runtime that
// ships inside Caddy; Caddy talks to it over inherited socketpairs. Go does all HTTP
// work; Python builds the environ and runs the app.
//
// A pool survives `caddy reload` when its settings are unchanged.
type WSGI struct {
	// The application: `module:callable`, `module` (the callable is `application`), or
	// `module:factory()` to call a factory, optionally with literal arguments.
	App string `json:"app"`

	// Python interpreter. Default: `<venv>/bin/python` when venv is set, else `python3`
	// from PATH.
	Python string `json:"python,omitempty"`

	// Virtualenv directory: its interpreter is used and VIRTUAL_ENV and PATH are set.
	Venv string `json:"venv,omitempty"`

	// Working directory of the workers, and the first entry of sys.path. Default:
	// Caddy's working directory.
	Chdir string `json:"chdir,omitempty"`

	// More directories for sys.path, after chdir.
	PythonPath []string `json:"pythonpath,omitempty"`

	// Environment variables for the workers, added to the environment they inherit
	// from Caddy (as Gunicorn's workers do).
	Env map[string]string `json:"env,omitempty"`

	// Number of worker processes. Default: the number of CPUs.
	Workers int `json:"workers,omitempty"`

	// Threads per worker process, each serving one request at a time. Default 1.
	Threads int `json:"threads,omitempty"`

	// Worker class: "sync" (default; threads serve one request each) or "gevent": each
	// worker monkey-patches the stdlib before importing the app and serves
	// worker_connections requests at once with greenlets, for apps that mostly wait on
	// I/O. gevent must be installed in the worker's environment; it cannot be combined
	// with preload. Eventlet is not offered: it is deprecated upstream, and Gunicorn
	// removed it.
	WorkerClass string `json:"worker_class,omitempty"`

	// With worker_class gevent: concurrent requests per worker. Default 100.
	WorkerConnections int `json:"worker_connections,omitempty"`

	// How long a request may wait for a free worker thread before it gets 503 with
	// Retry-After. Default 30s.
	QueueTimeout caddy.Duration `json:"queue_timeout,omitempty"`

	// How many requests may wait for a worker; more get 503 at once. Default 1000.
	MaxQueue int `json:"max_queue,omitempty"`

	// Request bodies up to this many bytes are read completely by Caddy before a worker
	// is chosen, so slow uploads never hold a Python worker, and a chunked body reaches
	// the app with CONTENT_LENGTH (Django reads chunked bodies as empty otherwise).
	// Larger bodies stream to wsgi.input. Default 1 MiB.
	BufferBody int64 `json:"buffer_body,omitempty"`

	// SCRIPT_NAME, the path the app is mounted at. When a request path starts with it,
	// PATH_INFO is the rest; otherwise (the prefix was removed before Caddy) PATH_INFO
	// is the whole path. When unset and Caddy stripped a prefix (`handle_path /app/*`),
	// SCRIPT_NAME is that prefix.
	ScriptName string `json:"script_name,omitempty"`

	// How long a worker may take to import the app before it is killed and retried.
	// Default 60s.
	BootTimeout caddy.Duration `json:"boot_timeout,omitempty"`

	// How long stopping workers may finish their requests. Default 30s.
	GracefulTimeout caddy.Duration `json:"graceful_timeout,omitempty"`

	// Per-request deadline, in every mode (threads included): the time to the first
	// response block, and then between blocks, so a steady stream (server-sent events)
	// is not cut. Past it the stacks of all the worker's threads are logged with the
	// request, the worker is killed and replaced, and the client gets 504. Default 30s;
	// 0 disables.
	Timeout *caddy.Duration `json:"timeout,omitempty"`

	// Recycle a worker after this many requests, plus a random 0..max_requests_jitter
	// so workers do not all recycle at once. The replacement is ready before the old
	// worker stops taking requests. 0 (default): never.
	MaxRequests       int64 `json:"max_requests,omitempty"`
	MaxRequestsJitter int64 `json:"max_requests_jitter,omitempty"`

	// Recycle a worker this long after it started, plus a random 0..max_lifetime_jitter.
	MaxLifetime       caddy.Duration `json:"max_lifetime,omitempty"`
	MaxLifetimeJitter caddy.Duration `json:"max_lifetime_jitter,omitempty"`

	// Recycle a worker whose resident memory passes this many bytes (checked every
	// second; the worker finishes its running requests first). 0 (default): never.
	MaxRSS int64 `json:"max_rss,omitempty"`

	// Name of the pool in the admin API and metrics. Default: the app spec.
	Name string `json:"name,omitempty"`

	// User and group the workers run as (a name or a number). Caddy must run as root;
	// the switch happens when the worker starts, before Python imports anything.
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`

	// What the workers inherit from Caddy's environment. Unset: everything (as with
	// Gunicorn: twelve-factor apps read their settings from it). ["off"]: only PATH,
	// HOME, LANG, LC_ALL, LC_CTYPE, TZ and TMPDIR, so Caddy's own secrets (ACME or DNS
	// credentials) stay away from the app. A list of names: those and the basics.
	// `env` is added in every case.
	EnvInherit []string `json:"env_inherit,omitempty"`

	// Dotenv files for the workers' environment (`KEY=VALUE` lines, 'single' or
	// "double" quotes, `#` comments, an `export` prefix; nothing is interpolated), in
	// order, a later file overriding an earlier one. They are read at each worker start
	// (with preload, each zygote start), so a rolling restart picks up their edits; a
	// missing or malformed file is an error at load, naming the line, and at a restart
	// the old workers are kept. `env` overrides them.
	EnvFile []string `json:"env_file,omitempty"`

	// Autoscaling: with max_workers above workers, a worker is added (up to
	// max_workers) when requests have waited in the queue for more than half a second
	// and the CPU is not saturated, and a worker idle for idle_timeout (default 30s) is
	// retired (down to workers). Caddyfile: `workers <min> <max>`.
	MaxWorkers  int            `json:"max_workers,omitempty"`
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`

	// Development: restart the workers, rolling, when a .py file under chdir changes.
	Reload bool `json:"reload,omitempty"`

	// A Python module with Gunicorn-style server hooks, each optional: on_starting(server),
	// post_fork(worker), post_worker_init(worker), pre_request(environ),
	// post_request(environ, status), worker_exit(worker). They run in the worker (or
	// the zygote, with preload). An exception in a hook is logged with its traceback.
	// ASGI workers run all but pre_request and post_request (as under Gunicorn's
	// UvicornWorker): an ASGI middleware does that job; worker_exit runs after lifespan
	// shutdown.
	//
	// A Gunicorn config file works too: a path ending in .py or containing a slash,
	// file:PATH, or python:MODULE (relative paths count from Caddy's working directory).
	// It is executed in each worker (or the zygote) as Gunicorn executes it, and its
	// hooks are called with Gunicorn's signatures: on_starting(server),
	// post_fork(server, worker), post_worker_init(worker), pre_request(worker, req),
	// post_request(worker, req, environ, resp), worker_exit(server, worker) and
	// worker_abort(worker), which runs when a request times out, just before the worker
	// is killed. server and worker have pid, ppid, cfg (the file's settings) and log
	// (Gunicorn's gunicorn.error logger, to stderr); req has method, path, query, uri,
	// headers; resp has status and status_code.
	Hooks string `json:"hooks,omitempty"`

	// Import the app once in a Python parent process (a "zygote") and fork the workers
	// from it: memory is shared copy-on-write and a worker starts in milliseconds.
	// Connections and threads opened at import time are shared by every fork: open
	// them in post_fork, or lazily (see the README).
	Preload bool `json:"preload,omitempty"`

	poolKey string
	pool    *workerpool.Pool
	handler *gateway.Handler
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (WSGI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.wsgi",
		New: func() caddy.Module { return new(WSGI) },
	}
}

// handlerKind is what the handler module (wsgi or asgi) adds to the shared settings.
type handlerKind struct {
	name        string // the handler, in messages: wsgi or asgi
	class       workerpool.WorkerClass
	connections int    // channels per worker (worker_connections, max_concurrency)
	lifespan    string // asgi
	ws          websocket.Options
}

// wsgiKind is the wsgi handler's: the worker class and connections as configured.
func (m *WSGI) wsgiKind() handlerKind {
	return handlerKind{name: "wsgi", class: workerpool.WorkerClass(m.WorkerClass), connections: m.WorkerConnections}
}

// poolConfig is the part of the module that defines a pool: the key for reuse.
func (m *WSGI) poolConfig(logger *zap.Logger, kind handlerKind) workerpool.Config {
	return workerpool.Config{
		App:               m.App,
		Python:            m.Python,
		Venv:              m.Venv,
		Chdir:             m.Chdir,
		PythonPath:        m.PythonPath,
		Env:               m.Env,
		Workers:           m.Workers,
		Threads:           m.Threads,
		QueueTimeout:      time.Duration(m.QueueTimeout),
		MaxQueue:          m.MaxQueue,
		BootTimeout:       time.Duration(m.BootTimeout),
		GracefulTimeout:   time.Duration(m.GracefulTimeout),
		Timeout:           timeout(m.Timeout),
		MaxRequests:       m.MaxRequests,
		MaxRequestsJitter: m.MaxRequestsJitter,
		MaxLifetime:       time.Duration(m.MaxLifetime),
		MaxLifetimeJitter: time.Duration(m.MaxLifetimeJitter),
		MaxRSS:            m.MaxRSS,
		MaxWorkers:        m.MaxWorkers,
		IdleTimeout:       time.Duration(m.IdleTimeout),
		Reload:            m.Reload,
		Hooks:             hooksSpec(m.Hooks),
		Preload:           m.Preload,
		User:              m.User,
		Group:             m.Group,
		EnvInherit:        m.EnvInherit,
		EnvFiles:          m.EnvFile,
		WorkerClass:       kind.class,
		WorkerConnections: kind.connections,
		Lifespan:          kind.lifespan,
		ServerSoftware:    "caddy-wsgi/" + Version,
		Logger:            logger,
	}
}

// timeout maps the option to the pool's convention: unset is the default, 0 is off.
func timeout(d *caddy.Duration) time.Duration {
	switch {
	case d == nil:
		return 0
	case *d <= 0:
		return -1
	}
	return time.Duration(*d)
}

// Provision starts the pool, or adopts the running one when a reload left its settings
// unchanged, and waits until a worker has imported the app. If the import fails on first
// start, the site answers 503 while the pool retries (Caddy comes up and serves its other
// sites); if it fails on a reload (whatever the pool's name: a reload may switch apps),
// the new config is rejected and the running one keeps serving.
func (m *WSGI) Provision(ctx caddy.Context) error {
	return m.provision(ctx, m.wsgiKind())
}

// provision is Provision for either handler module.
func (m *WSGI) provision(ctx caddy.Context, kind handlerKind) error {
	if err := platformError(kind.name); err != nil {
		return err
	}
	m.logger = ctx.Logger()
	if m.Name == "" {
		m.Name = m.App
	}
	cfg := m.poolConfig(m.logger, kind)
	keyCfg := cfg
	keyCfg.Logger = nil
	key, err := json.Marshal(struct {
		Name string
		Pool workerpool.Config
	}{m.Name, keyCfg})
	if err != nil {
		return fmt.Errorf("wsgi: %w", err)
	}
	_, replacing := findPool(m.Name)
	// A running config means this is a reload: a new pool that cannot import must not
	// replace what serves now (ActiveContext is still the running config's here).
	replacing = replacing || caddy.ActiveContext().Context != nil
	val, loaded, err := pools.LoadOrNew(string(key), func() (caddy.Destructor, error) {
		p, err := workerpool.New(cfg)
		if err != nil {
			return nil, err
		}
		p.Start()
		return newPoolHolder(m.Name, p), nil
	})
	if err != nil {
		return fmt.Errorf("wsgi %s: %w", m.App, err)
	}
	m.poolKey = string(key)
	holder := val.(*poolHolder)
	m.pool = holder.pool
	if !loaded {
		wait, cancel := context.WithTimeout(ctx, m.pool.Config().BootTimeout+5*time.Second)
		defer cancel()
		if !m.pool.WaitReady(wait) {
			bootErr := m.pool.LastBootError()
			if replacing {
				pools.Delete(m.poolKey)
				m.poolKey = ""
				return fmt.Errorf("wsgi %s: the new app failed to import, keeping the running config: %v", m.Name, bootErr)
			}
			m.logger.Error("no worker could start; requests get 503 until one does", zap.String("app", m.App), zap.Error(bootErr))
		}
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		m.logger.Warn("wsgi metrics not registered", zap.Error(err))
	}
	m.handler = gateway.New(m.pool, gateway.Options{
		BufferBody: m.BufferBody,
		ScriptName: m.ScriptName,
		Logger:     m.logger,
		Observer:   holder.metrics,
		WebSocket:  kind.ws,
	})
	return nil
}

// Validate checks the app spec and the interpreter.
func (m *WSGI) Validate() error {
	if err := workerpool.ValidateAppSpec(m.App); err != nil {
		return fmt.Errorf("wsgi: %w", err)
	}
	if m.MaxWorkers > 0 && m.MaxWorkers < m.Workers {
		return fmt.Errorf("wsgi: max_workers %d is below workers %d", m.MaxWorkers, m.Workers)
	}
	if m.ScriptName != "" && !strings.HasPrefix(m.ScriptName, "/") {
		return fmt.Errorf("wsgi: script_name %q must start with /", m.ScriptName)
	}
	return nil
}

// Cleanup releases this config's hold on the pool; the last holder stops it.
func (m *WSGI) Cleanup() error {
	if m.poolKey == "" {
		return nil
	}
	_, err := pools.Delete(m.poolKey)
	return err
}

// ServeHTTP runs the request through a worker. The WSGI app is the end of the chain:
// next is never called.
func (m *WSGI) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	m.handler.ServeHTTP(w, r, requestInfo(r, m.ScriptName))
	return nil
}

// requestInfo gathers what Caddy knows about r: the client address under
// trusted_proxies, the request target before rewrites, and a prefix Caddy stripped.
func requestInfo(r *http.Request, scriptName string) gateway.Request {
	var info gateway.Request // a configured script_name is the handler's to strip
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok {
		info.ClientIP = ip
	}
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok {
		info.RawURI = orig.RequestURI
		if scriptName == "" && orig.URL != nil && orig.URL.Path != r.URL.Path &&
			strings.HasSuffix(orig.URL.Path, r.URL.Path) {
			info.ScriptName = strings.TrimSuffix(orig.URL.Path[:len(orig.URL.Path)-len(r.URL.Path)], "/")
		}
	}
	if r.TLS == nil {
		if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted &&
			strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
			info.Scheme = "https"
		}
	}
	return info
}

// Interface guards
var (
	_ caddy.Provisioner           = (*WSGI)(nil)
	_ caddy.Validator             = (*WSGI)(nil)
	_ caddy.CleanerUpper          = (*WSGI)(nil)
	_ caddyhttp.MiddlewareHandler = (*WSGI)(nil)
)
