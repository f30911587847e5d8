package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/caddy-wsgi/caddy-wsgi/workerpool"
)

// `caddy wsgi-server`: Gunicorn's command line on top of Caddy, the way `caddy
// reverse-proxy` and `caddy file-server` are one-line servers. It builds an ordinary
// Caddy JSON config around the wsgi handler (`--print-config` shows it) and runs it.

const wsgiServerUsage = gunicornUsage + `[--listen <addr> | -b <addr>] [--domain <example.com>] [-w <n>] [--threads <n>] [-k sync|gevent] [--worker-connections <n>] ` +
	`[--timeout <d>] [--graceful-timeout <d>] [--max-requests <n>] [--max-requests-jitter <n>] ` +
	`[--chdir <dir>] [--venv <dir>] [--python <path>] [--pythonpath <dirs>] [-e KEY=VALUE]... [--env-file <path>]... ` +
	`[--static /prefix/=<dir>]... [--x-accel-root <dir>] [--reload] [--preload] [--access-log] [--access-logfile -|<file>] ` +
	`[--log-level <level>] [--admin <addr>|off] [--print-config] <module:callable>`

const wsgiServerLong = `
Serves a Python WSGI application from a pool of worker processes managed by Caddy, as
Gunicorn does, with Caddy's HTTP/1.1, HTTP/2 and automatic HTTPS in front. The flags
Gunicorn users know keep their spelling:

  caddy wsgi-server -w 4 -b 0.0.0.0:8000 myproject.wsgi:application

APP is module:callable, module (callable "application"), or module:factory(), e.g.
"app:create_app()". It is imported with --chdir as the first entry of sys.path.

Listening: without --domain, plain HTTP on --listen/-b (default 127.0.0.1:8000, or
0.0.0.0:$PORT when PORT is set, as in Gunicorn). With --domain example.com, Caddy serves
HTTPS for that name on :443 with a certificate it obtains and renews itself, and redirects
HTTP to HTTPS (as "caddy reverse-proxy --from example.com" does); --listen changes the
address. A gunicorn "unix:/path" bind becomes a unix socket listener.

Workers: -w/--workers (default $WEB_CONCURRENCY, else the number of CPUs), --threads per
worker (default 1). --timeout and --graceful-timeout take seconds ("30", as Gunicorn) or a
duration ("1m30s"); --timeout 0 disables the per-request deadline.

Static files: --static /static/=./staticfiles (repeatable) serves that directory at that
path prefix with Caddy's file_server, before the app; a missing file there is a 404 from
Caddy, not a request to Python.

Environment: -e KEY=VALUE (repeatable) sets variables for the workers, on top of the ones
they inherit from Caddy. --env-file .env (repeatable) adds a dotenv file's (KEY=VALUE,
quotes, # comments, export), read again at each worker start; -e overrides it.

Protected downloads: with --x-accel-root DIR, an app answer carrying X-Accel-Redirect
(a path under DIR, as for NGINX) or X-Sendfile (an absolute path under DIR, as for
Apache) is replaced by the file, sent by Caddy's file_server with ranges and ETags; the
worker is free at once.

The admin endpoint is Caddy's default (localhost:2019, or $CADDY_ADMIN) unless --admin is
given ("off" disables it). With it, GET /wsgi/pools shows the workers and
GET /wsgi/pools/<app>/health says whether a worker is ready.

--print-config prints the JSON config instead of running it: save it as a starting point
for "caddy run --config caddy.json", or convert the same settings to a Caddyfile by hand
(see docs/options.md).

Gunicorn config: -c/--config gunicorn.conf.py (else ./gunicorn.conf.py when it exists, as
Gunicorn does) is run by the app's interpreter (--venv/--python) and its settings, and then
GUNICORN_CMD_ARGS, fill in the flags the command line does not give. Its server hooks run
in the workers with Gunicorn's signatures; a setting with no counterpart is logged once
with what to use instead. With --print-config the settings read go to stderr. See
docs/migration.md.
`

const asgiServerUsage = gunicornUsage + `[--listen <addr> | -b <addr> | --host <host> --port <port>] [--domain <example.com>] [-w <n>] ` +
	`[--max-concurrency <n>] [--lifespan auto|on|off] [--timeout <d>] [--graceful-timeout <d>] ` +
	`[--max-requests <n>] [--max-requests-jitter <n>] [--chdir <dir>] [--venv <dir>] [--python <path>] ` +
	`[--pythonpath <dirs>] [-e KEY=VALUE]... [--env-file <path>]... [--static /prefix/=<dir>]... [--x-accel-root <dir>] [--reload] [--preload] ` +
	`[--access-log] [--access-logfile -|<file>] [--log-level <level>] [--admin <addr>|off] [--print-config] <module:app>`

const asgiServerLong = `
Serves a Python ASGI 3 application (FastAPI, Starlette, Django's ASGI handler) from a pool of
worker processes managed by Caddy, as "gunicorn -k uvicorn.workers.UvicornWorker" or
"uvicorn --workers" do, with Caddy's HTTP/1.1, HTTP/2, WebSockets and automatic HTTPS in
front:

  caddy asgi-server -w 4 --host 0.0.0.0 --port 8000 main:app

Every flag of "caddy wsgi-server" works the same (see "caddy help wsgi-server"), except
--threads, -k and --worker-connections. Each worker runs one asyncio event loop (uvloop
when installed) with up to --max-concurrency requests and WebSockets at once (default
1000). --lifespan auto (default), on or off: the ASGI lifespan protocol runs in each
worker; a failing startup keeps that worker out of rotation and is logged. --host and
--port are Uvicorn's spelling of --listen.

WebSockets are accepted over HTTP/1.1, HTTP/2 (RFC 8441) and HTTP/3 (RFC 9220).
`

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "asgi-server",
		Usage: asgiServerUsage,
		Short: "Serve a Python ASGI app (FastAPI, Starlette, Django) from Caddy-managed workers",
		Long:  asgiServerLong,
		CobraFunc: func(cmd *cobra.Command) {
			addASGIServerFlags(cmd.Flags())
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdASGIServer)
		},
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "wsgi-server",
		Usage: wsgiServerUsage,
		Short: "Serve a Python WSGI app from Caddy-managed workers (like gunicorn)",
		Long:  wsgiServerLong,
		CobraFunc: func(cmd *cobra.Command) {
			addWSGIServerFlags(cmd.Flags())
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdWSGIServer)
		},
	})
}

// addWSGIServerFlags defines the flags of `caddy wsgi-server` on fs.
func addWSGIServerFlags(fs *pflag.FlagSet) {
	addServerFlags(fs)
	fs.Int("threads", 0, "Threads per worker (default 1)")
	fs.StringP("worker-class", "k", "", "sync (default) or gevent")
	fs.Int("worker-connections", 0, "With -k gevent: concurrent requests per worker (default 100)")
}

// addASGIServerFlags defines the flags of `caddy asgi-server` on fs: those of wsgi-server
// without threads and worker classes, plus Uvicorn's --host, --port and --lifespan.
func addASGIServerFlags(fs *pflag.FlagSet) {
	addServerFlags(fs)
	fs.String("host", "", "Uvicorn's spelling: the address to listen on (default 127.0.0.1)")
	fs.Int("port", 0, "Uvicorn's spelling: the port to listen on (default 8000)")
	fs.Int("max-concurrency", 0, "Concurrent requests and WebSockets per worker (default 1000)")
	fs.String("lifespan", "", "ASGI lifespan: auto (default), on or off")
}

// addServerFlags defines the flags both subcommands share.
func addServerFlags(fs *pflag.FlagSet) {
	fs.StringP("listen", "l", "", "Address to listen on (default 127.0.0.1:8000, or :443 with --domain)")
	fs.StringP("bind", "b", "", "Gunicorn's name for --listen (HOST:PORT, :PORT or unix:PATH)")
	fs.StringP("domain", "d", "", "Domain name to serve with automatic HTTPS")
	fs.IntP("workers", "w", 0, "Worker processes (default $WEB_CONCURRENCY, else the number of CPUs)")
	fs.StringP("timeout", "t", "", "Per-request deadline, seconds or a duration; 0 disables (default 30s)")
	fs.String("graceful-timeout", "", "How long stopping workers may finish requests, seconds or a duration (default 30s)")
	fs.Int64("max-requests", 0, "Recycle a worker after this many requests (default 0: never)")
	fs.Int64("max-requests-jitter", 0, "Add a random 0..N to --max-requests per worker")
	fs.String("chdir", "", "Working directory of the workers, first entry of sys.path")
	fs.String("venv", "", "Virtualenv whose interpreter runs the workers")
	fs.String("python", "", "Python interpreter (default <venv>/bin/python, else python3)")
	fs.String("pythonpath", "", "Comma-separated directories to add to sys.path")
	fs.StringArrayP("env", "e", nil, "KEY=VALUE environment variable for the workers (repeatable)")
	fs.StringArray("static", nil, "/prefix/=DIR: serve DIR at /prefix/ with Caddy's file_server (repeatable)")
	fs.Bool("reload", false, "Development: restart the workers when a .py file under --chdir changes")
	fs.Bool("preload", false, "Import the app once and fork the workers from it")
	fs.Bool("access-log", false, "Log every request (to Caddy's log, stderr)")
	fs.String("access-logfile", "", "Write the access log to this file; - is stdout")
	fs.String("log-level", "", "Log level: debug, info, warning, error")
	fs.String("admin", "", "Admin endpoint address, or off (default: Caddy's, localhost:2019)")
	fs.Bool("print-config", false, "Print the JSON config and exit")
	addFileFlags(fs)
	addGunicornFlags(fs)
}

func cmdWSGIServer(fl caddycmd.Flags) (int, error) {
	cfg, summary, err := wsgiServerConfig(fl.FlagSet, fl.Args(), os.Getenv)
	return runServer(fl, cfg, summary, err)
}

func cmdASGIServer(fl caddycmd.Flags) (int, error) {
	cfg, summary, err := asgiServerConfig(fl.FlagSet, fl.Args(), os.Getenv)
	return runServer(fl, cfg, summary, err)
}

func runServer(fl caddycmd.Flags, cfg *caddy.Config, summary wsgiServerSummary, err error) (int, error) {
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	summary.gunicorn.report(fl.Bool("print-config"))
	if fl.Bool("print-config") {
		out, err := json.MarshalIndent(cfg, "", "\t")
		if err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
		fmt.Println(string(out))
		return caddy.ExitCodeSuccess, nil
	}
	if err := platformError(strings.ToLower(summary.kind)); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	caddy.TrapSignals()
	if err := caddy.Run(cfg); err != nil {
		return caddy.ExitCodeFailedStartup, explainStartError(err)
	}
	caddy.Log().Info("serving "+summary.kind+" app", zap.String("app", summary.app), zap.String("address", summary.address))
	select {}
}

// explainStartError adds the flag to change to an "address in use" failure: a second
// one-line server on a machine fails on Caddy's admin port (2019) first.
func explainStartError(err error) error {
	msg := err.Error()
	if !errors.Is(err, syscall.EADDRINUSE) && !strings.Contains(msg, "address already in use") {
		return err
	}
	if strings.Contains(msg, "admin") {
		return fmt.Errorf("%w\n(the admin endpoint's address is taken, probably by another caddy: give this server its own with --admin localhost:PORT, or --admin off)", err)
	}
	return fmt.Errorf("%w\n(the address to serve on is taken: choose another with --listen/-b, or --port)", err)
}

// wsgiServerSummary is what the command logs once the server runs.
type wsgiServerSummary struct {
	kind, app, address string
	gunicorn           *gunicornConf // what gunicorn.conf.py and GUNICORN_CMD_ARGS said
}

// wsgiServerConfig turns the parsed flags and the positional arguments into a Caddy
// config. getenv reads WEB_CONCURRENCY and PORT.
func wsgiServerConfig(fs *pflag.FlagSet, args []string, getenv func(string) string) (*caddy.Config, wsgiServerSummary, error) {
	return serverConfig(fs, args, getenv, false)
}

// asgiServerConfig is wsgiServerConfig for `caddy asgi-server`.
func asgiServerConfig(fs *pflag.FlagSet, args []string, getenv func(string) string) (*caddy.Config, wsgiServerSummary, error) {
	return serverConfig(fs, args, getenv, true)
}

// workerFlags reads wsgi-server's --threads, -k and --worker-connections into h.
func workerFlags(fs *pflag.FlagSet, h *WSGI) error {
	h.Threads, _ = fs.GetInt("threads")
	if fs.Changed("threads") && h.Threads < 1 {
		return fmt.Errorf("--threads: %d is not a positive integer", h.Threads)
	}
	h.WorkerClass, _ = fs.GetString("worker-class")
	switch {
	case workerpool.WorkerClass(h.WorkerClass).ServesWSGI():
	case h.WorkerClass == "gthread":
		h.WorkerClass = "" // Gunicorn's threaded class is --threads here
	default:
		if strings.Contains(strings.ToLower(h.WorkerClass), "uvicorn") || workerpool.WorkerClass(h.WorkerClass) == workerpool.ClassASGI {
			return fmt.Errorf("-k/--worker-class %q: ASGI apps run with `caddy asgi-server APP`", h.WorkerClass)
		}
		return fmt.Errorf("-k/--worker-class %q: want sync or gevent (gthread is --threads)", h.WorkerClass)
	}
	h.WorkerConnections, _ = fs.GetInt("worker-connections")
	if fs.Changed("worker-connections") && h.WorkerConnections < 1 {
		return fmt.Errorf("--worker-connections: %d is not a positive integer", h.WorkerConnections)
	}
	return nil
}

// asgiFlags wraps h in the asgi handler with asgi-server's own flags.
func asgiFlags(fs *pflag.FlagSet, h WSGI) (ASGI, error) {
	a := ASGI{WSGI: h}
	a.MaxConcurrency, _ = fs.GetInt("max-concurrency")
	if fs.Changed("max-concurrency") && (a.MaxConcurrency < 1 || a.MaxConcurrency > 10000) {
		return a, fmt.Errorf("--max-concurrency: %d is not an integer from 1 to 10000", a.MaxConcurrency)
	}
	a.Lifespan, _ = fs.GetString("lifespan")
	if err := workerpool.ValidateLifespan(a.Lifespan); err != nil {
		return a, fmt.Errorf("--%w", err)
	}
	if fs.Changed("port") {
		if p, _ := fs.GetInt("port"); p < 1 || p > 65535 {
			return a, fmt.Errorf("--port: %d is not a port number", p)
		}
	}
	return a, nil
}

// flagDuration parses Gunicorn's seconds ("30", "2.5") or a Caddy duration ("1m30s").
func flagDuration(name, v string, zeroOK bool) (time.Duration, error) {
	var d time.Duration
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		d = time.Duration(secs * float64(time.Second))
	} else if d, err = caddy.ParseDuration(v); err != nil {
		return 0, fmt.Errorf("--%s %q: want seconds (30) or a duration (1m30s)", name, v)
	}
	if d < 0 || (d == 0 && !zeroOK) {
		return 0, fmt.Errorf("--%s %q: must be positive", name, v)
	}
	return d, nil
}

// listenAddress accepts Caddy's network addresses and Gunicorn's bind forms.
func listenAddress(v string) (string, error) {
	switch {
	case strings.HasPrefix(v, "unix:") && !strings.HasPrefix(v, "unix//"):
		v = "unix/" + strings.TrimPrefix(v, "unix:")
	case strings.HasPrefix(v, "fd://"):
		return "", fmt.Errorf("--listen/-b %q: file descriptors are not supported; use HOST:PORT or unix:PATH", v)
	}
	if !strings.Contains(v, ":") && !strings.HasPrefix(v, "unix/") {
		v += ":8000" // Gunicorn: a bare host means port 8000
	}
	addr, err := caddy.ParseNetworkAddress(v)
	if err != nil {
		return "", fmt.Errorf("--listen/-b %q: %v", v, err)
	}
	if !addr.IsUnixNetwork() && addr.StartPort == 0 {
		return "", fmt.Errorf("--listen/-b %q: no port", v)
	}
	return v, nil
}

// staticRoute builds the route of one --static /prefix/=DIR: the prefix is stripped and
// the rest of the path is looked up under DIR.
func staticRoute(spec string) (caddyhttp.Route, error) {
	prefix, dir, ok := strings.Cut(spec, "=")
	if !ok || dir == "" || !strings.HasPrefix(prefix, "/") {
		return caddyhttp.Route{}, fmt.Errorf("--static %q: want /prefix/=DIR, e.g. --static /static/=./staticfiles", spec)
	}
	prefix = strings.TrimRight(prefix, "/")
	if prefix == "" {
		return caddyhttp.Route{}, fmt.Errorf("--static %q: the prefix cannot be / (the app is served there)", spec)
	}
	if strings.ContainsAny(prefix, "*{}") {
		return caddyhttp.Route{}, fmt.Errorf("--static %q: the prefix must be a plain path", spec)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return caddyhttp.Route{}, fmt.Errorf("--static %q: %s is not a directory", spec, dir)
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return caddyhttp.Route{
		MatcherSetsRaw: []caddy.ModuleMap{{"path": caddyconfig.JSON(caddyhttp.MatchPath{prefix + "/*"}, nil)}},
		HandlersRaw: []json.RawMessage{
			caddyconfig.JSONModuleObject(rewrite.Rewrite{StripPathPrefix: prefix}, "handler", "rewrite", nil),
			// file_server as JSON: its package pulls in the templates module's dependencies.
			caddyconfig.JSON(map[string]string{"handler": "file_server", "root": dir}, nil),
		},
		Terminal: true,
	}, nil
}

// wsgiServerLogging maps --access-logfile and --log-level to Caddy's logging config; it
// reports whether the access log is on.
func wsgiServerLogging(accessFile, level string) (*caddy.Logging, bool, error) {
	var lvl string
	switch strings.ToLower(level) {
	case "":
	case "debug", "info", "error":
		lvl = strings.ToUpper(level)
	case "warning", "warn":
		lvl = "WARN"
	case "critical":
		lvl = "ERROR"
	default:
		return nil, false, fmt.Errorf("--log-level %q: want debug, info, warning, error or critical", level)
	}
	if accessFile == "" && lvl == "" {
		return nil, false, nil
	}
	logs := map[string]*caddy.CustomLog{"default": {BaseLog: caddy.BaseLog{Level: lvl}}}
	if accessFile != "" {
		writer := json.RawMessage(`{"output":"stdout"}`)
		if accessFile != "-" {
			abs, err := filepath.Abs(accessFile)
			if err != nil {
				return nil, false, fmt.Errorf("--access-logfile %q: %v", accessFile, err)
			}
			writer = caddyconfig.JSON(map[string]string{"output": "file", "filename": abs}, nil)
		}
		logs["default"].Exclude = []string{"http.log.access"}
		logs["access"] = &caddy.CustomLog{BaseLog: caddy.BaseLog{WriterRaw: writer}, Include: []string{"http.log.access"}}
	}
	return &caddy.Logging{Logs: logs}, accessFile != "", nil
}
