package caddymodule

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/caddy-wsgi/caddy-wsgi/workerpool"
)

// Gunicorn's config sources for `caddy wsgi-server` and `caddy asgi-server`: a
// gunicorn.conf.py (-c/--config, else ./gunicorn.conf.py when it exists, as Gunicorn
// does) and GUNICORN_CMD_ARGS. They are read into Gunicorn's setting names, layered as
// Gunicorn layers them (config file < GUNICORN_CMD_ARGS < command line), and then set
// the flags the command line did not set; serverConfig reads the flags as usual.

// gunicornConfScript execs a config file with the app's interpreter and prints it as JSON.
//
//go:embed gunicornconf.py
var gunicornConfScript string

// gunicornDefaultConfig is what Gunicorn reads when -c is not given.
const gunicornDefaultConfig = "gunicorn.conf.py"

// gunicornUsage is the start of the server commands' usage line: the flags below.
const gunicornUsage = `[-c <gunicorn.conf.py>] [-u <user>] [-g <group>] [--forwarded-allow-ips <ips>] [--keep-alive <s>] ` +
	`[--limit-request-line <n>] [--limit-request-fields <n>] [--limit-request-field_size <n>] `

// addGunicornFlags defines the flags for Gunicorn settings that have a counterpart in
// the server's config but not in the handler's flags.
func addGunicornFlags(fs *pflag.FlagSet) {
	fs.StringP("config", "c", "", "Gunicorn config file (gunicorn.conf.py, file:PATH or python:MODULE), run by the app's interpreter")
	fs.StringP("user", "u", "", "Run the workers as this user (Caddy must run as root)")
	fs.StringP("group", "g", "", "Run the workers as this group (Caddy must run as root)")
	fs.String("forwarded-allow-ips", "", "Comma-separated proxies (IPs, CIDRs, *) trusted for X-Forwarded-For/-Proto (Caddy's trusted_proxies)")
	fs.Int("keep-alive", 0, "Seconds an idle keep-alive connection stays open (Caddy's idle timeout, default 5m)")
	fs.Int("limit-request-line", 0, "Bound of the request header block, with the two below (Caddy's max_header_size)")
	fs.Int("limit-request-fields", 0, "See --limit-request-line")
	fs.Int("limit-request-field_size", 0, "See --limit-request-line")
}

// gunicornKind says how a Gunicorn command-line flag takes its value.
type gunicornKind int

const (
	gValue gunicornKind = iota // --flag VALUE, --flag=VALUE
	gList                      // repeatable --flag VALUE
	gBool                      // --flag
	gFalse                     // --no-flag: sets the setting to false
)

// gunicornSetting is one of Gunicorn's settings (26.x) and what takes its place.
type gunicornSetting struct {
	name    string
	cli     string // Gunicorn's spellings on the command line, space-separated
	kind    gunicornKind
	flag    string // our flag; "" when there is none
	instead string // with no flag: what to use instead (the warning's text)
}

// gunicornSettings lists every Gunicorn setting, in Gunicorn's documentation order.
var gunicornSettings = []gunicornSetting{
	{name: "config", cli: "-c --config", flag: "config"},
	{name: "wsgi_app"}, // the APP argument; handled in loadGunicorn
	{name: "bind", cli: "-b --bind", kind: gList, flag: "bind"},
	{name: "backlog", cli: "--backlog", instead: "not needed: requests wait in Caddy's bounded queue (max_queue, queue_timeout)"},
	{name: "workers", cli: "-w --workers", flag: "workers"},
	{name: "worker_class", cli: "-k --worker-class", flag: "worker-class"},
	{name: "threads", cli: "--threads", flag: "threads"},
	{name: "worker_connections", cli: "--worker-connections", flag: "worker-connections"},
	{name: "max_requests", cli: "--max-requests", flag: "max-requests"},
	{name: "max_requests_jitter", cli: "--max-requests-jitter", flag: "max-requests-jitter"},
	{name: "timeout", cli: "-t --timeout", flag: "timeout"},
	{name: "graceful_timeout", cli: "--graceful-timeout", flag: "graceful-timeout"},
	{name: "keepalive", cli: "--keep-alive", flag: "keep-alive"},
	{name: "limit_request_line", cli: "--limit-request-line", flag: "limit-request-line"},
	{name: "limit_request_fields", cli: "--limit-request-fields", flag: "limit-request-fields"},
	{name: "limit_request_field_size", cli: "--limit-request-field_size", flag: "limit-request-field_size"},
	{name: "reload", cli: "--reload", kind: gBool, flag: "reload"},
	{name: "reload_engine", cli: "--reload-engine", instead: "not needed: --reload watches the .py files under --chdir"},
	{name: "reload_extra_files", cli: "--reload-extra-file", kind: gList, instead: "not supported: --reload watches the .py files under --chdir"},
	{name: "spew", cli: "--spew", kind: gBool, instead: "not supported: use sys.settrace in the app"},
	{name: "check_config", cli: "--check-config", kind: gBool, instead: "use --print-config, or caddy validate with a Caddyfile"},
	{name: "print_config", cli: "--print-config", kind: gBool, flag: "print-config"},
	{name: "preload_app", cli: "--preload", kind: gBool, flag: "preload"},
	{name: "sendfile", cli: "--no-sendfile", kind: gFalse, instead: "not needed: wsgi.file_wrapper uses sendfile where it can"},
	{name: "reuse_port", cli: "--reuse-port", kind: gBool, instead: "not needed: Caddy alone listens"},
	{name: "chdir", cli: "--chdir", flag: "chdir"},
	{name: "daemon", cli: "-D --daemon", kind: gBool, instead: "use systemd (deploy/caddy-wsgi.service) or caddy start"},
	{name: "raw_env", cli: "-e --env", kind: gList, flag: "env"},
	{name: "pidfile", cli: "-p --pid", instead: "caddy run --pidfile (with a Caddyfile)"},
	{name: "worker_tmp_dir", cli: "--worker-tmp-dir", instead: "not needed: no heartbeat files; Caddy watches the workers over their sockets"},
	{name: "user", cli: "-u --user", flag: "user"},
	{name: "group", cli: "-g --group", flag: "group"},
	{name: "umask", cli: "-m --umask", instead: "the workers inherit Caddy's umask (systemd UMask=)"},
	{name: "initgroups", cli: "--initgroups", kind: gBool, instead: "not supported"},
	{name: "tmp_upload_dir", instead: "not needed: large bodies stream to wsgi.input"},
	{name: "secure_scheme_headers", instead: "not needed: wsgi.url_scheme follows TLS, or X-Forwarded-Proto from --forwarded-allow-ips"},
	{name: "forwarded_allow_ips", cli: "--forwarded-allow-ips", flag: "forwarded-allow-ips"},
	{name: "accesslog", cli: "--access-logfile", flag: "access-logfile"},
	{name: "disable_redirect_access_to_syslog", cli: "--disable-redirect-access-to-syslog", kind: gBool, instead: "not needed"},
	{name: "access_log_format", cli: "--access-logformat", instead: "Caddy's access log is structured JSON; a Caddyfile log { format ... } changes it"},
	{name: "errorlog", cli: "--error-logfile --log-file", instead: "Caddy logs to stderr; a Caddyfile's global log option writes a file"},
	{name: "loglevel", cli: "--log-level", flag: "log-level"},
	{name: "capture_output", cli: "--capture-output", kind: gBool, instead: "not needed: always on (worker output becomes log entries)"},
	{name: "logger_class", cli: "--logger-class", instead: "not needed: Caddy's logging"},
	{name: "logconfig", cli: "--log-config", instead: "configure Python logging in the app"},
	{name: "logconfig_dict", instead: "configure Python logging in the app (logging.config.dictConfig)"},
	{name: "logconfig_json", cli: "--log-config-json", instead: "configure Python logging in the app"},
	{name: "syslog_addr", cli: "--log-syslog-to", instead: "a Caddyfile log { output net ... }, or journald via systemd"},
	{name: "syslog", cli: "--log-syslog", kind: gBool, instead: "a Caddyfile log { output net ... }, or journald via systemd"},
	{name: "syslog_prefix", cli: "--log-syslog-prefix", instead: "a Caddyfile log { output net ... }"},
	{name: "syslog_facility", cli: "--log-syslog-facility", instead: "a Caddyfile log { output net ... }"},
	{name: "enable_stdio_inheritance", cli: "-R --enable-stdio-inheritance", kind: gBool, instead: "not needed"},
	{name: "statsd_host", cli: "--statsd-host", instead: "Prometheus metrics caddy_wsgi_* on the admin endpoint's /metrics"},
	{name: "dogstatsd_tags", cli: "--dogstatsd-tags", instead: "Prometheus metrics on the admin endpoint's /metrics"},
	{name: "statsd_prefix", cli: "--statsd-prefix", instead: "Prometheus metrics on the admin endpoint's /metrics"},
	{name: "enable_backlog_metric", cli: "--enable-backlog-metric", kind: gBool, instead: "not needed: caddy_wsgi_queue_depth is always there"},
	{name: "proc_name", cli: "-n --name", instead: "process titles are not set; the pool is named by its app in the admin API"},
	{name: "default_proc_name", instead: "not needed"},
	{name: "pythonpath", cli: "--pythonpath", flag: "pythonpath"},
	{name: "paste", cli: "--paste --paster", instead: "a module that calls paste.deploy.loadapp()"},
	{name: "raw_paste_global_conf", cli: "--paste-global", kind: gList, instead: "a module that calls paste.deploy.loadapp()"},
	{name: "permit_obsolete_folding", cli: "--permit-obsolete-folding", kind: gBool, instead: "not needed: Go's HTTP parser decides"},
	{name: "strip_header_spaces", cli: "--strip-header-spaces", kind: gBool, instead: "not needed: Go's HTTP parser decides"},
	{name: "permit_unconventional_http_method", cli: "--permit-unconventional-http-method", kind: gBool, instead: "not needed: Go's HTTP parser decides"},
	{name: "permit_unconventional_http_version", cli: "--permit-unconventional-http-version", kind: gBool, instead: "not needed: Go's HTTP parser decides"},
	{name: "casefold_http_method", cli: "--casefold-http-method", kind: gBool, instead: "not needed: Go's HTTP parser decides"},
	{name: "forwarder_headers", cli: "--forwarder-headers", instead: "not needed: SCRIPT_NAME comes from the config (script_name, handle_path), never from a header"},
	{name: "header_map", cli: "--header-map", instead: "not needed: headers with _ are dropped (Gunicorn's default)"},
	{name: "proxy_protocol", cli: "--proxy-protocol", instead: "a Caddyfile listener_wrappers { proxy_protocol }"},
	{name: "proxy_allow_ips", cli: "--proxy-allow-from", instead: "a Caddyfile listener_wrappers { proxy_protocol { allow ... } }"},
	{name: "protocol", cli: "--protocol", instead: "not needed: Caddy is the front end"},
	{name: "uwsgi_allow_ips", cli: "--uwsgi-allow-from", instead: "not needed: Caddy is the front end"},
	{name: "keyfile", cli: "--keyfile", instead: "--domain (automatic HTTPS), or a Caddyfile tls directive"},
	{name: "certfile", cli: "--certfile", instead: "--domain (automatic HTTPS), or a Caddyfile tls directive"},
	{name: "ssl_version", cli: "--ssl-version", instead: "a Caddyfile tls { protocols }"},
	{name: "cert_reqs", cli: "--cert-reqs", instead: "a Caddyfile tls { client_auth }"},
	{name: "ca_certs", cli: "--ca-certs", instead: "a Caddyfile tls { client_auth }"},
	{name: "suppress_ragged_eofs", cli: "--suppress-ragged-eofs", kind: gBool, instead: "not needed: Caddy terminates TLS"},
	{name: "do_handshake_on_connect", cli: "--do-handshake-on-connect", kind: gBool, instead: "not needed: Caddy terminates TLS"},
	{name: "ciphers", cli: "--ciphers", instead: "a Caddyfile tls { ciphers }"},
	{name: "http_protocols", cli: "--http-protocols", instead: "not needed: HTTP/1.1, HTTP/2 and HTTP/3 (a Caddyfile servers { protocols } changes them)"},
	{name: "http2_cleartext", cli: "--http2-cleartext", instead: "a Caddyfile servers { protocols h1 h2c }"},
	{name: "http2_max_concurrent_streams", cli: "--http2-max-concurrent-streams", instead: "not needed: Caddy's HTTP/2 defaults"},
	{name: "http2_initial_window_size", cli: "--http2-initial-window-size", instead: "not needed: Caddy's HTTP/2 defaults"},
	{name: "http2_max_frame_size", cli: "--http2-max-frame-size", instead: "not needed: Caddy's HTTP/2 defaults"},
	{name: "http2_max_header_list_size", cli: "--http2-max-header-list-size", instead: "not needed: Caddy's HTTP/2 defaults"},
	{name: "asgi_loop", cli: "--asgi-loop", instead: "not needed: uvloop when installed, else asyncio"},
	{name: "asgi_lifespan", cli: "--asgi-lifespan", flag: "lifespan"},
	{name: "asgi_disconnect_grace_period", cli: "--asgi-disconnect-grace-period", instead: "not needed"},
	{name: "root_path", cli: "--root-path", instead: "a Caddyfile handle_path /prefix/* (root_path is the stripped prefix)"},
	{name: "dirty_apps", cli: "--dirty-app", kind: gList, instead: "not supported: a second pool with its own routes in a Caddyfile"},
	{name: "dirty_workers", cli: "--dirty-workers", instead: "not supported"},
	{name: "dirty_timeout", cli: "--dirty-timeout", instead: "not supported"},
	{name: "dirty_threads", cli: "--dirty-threads", instead: "not supported"},
	{name: "dirty_graceful_timeout", cli: "--dirty-graceful-timeout", instead: "not supported"},
}

// gunicornHooks are the server hooks the workers run, with Gunicorn's signatures.
var gunicornHooks = map[string]bool{
	"on_starting": true, "post_fork": true, "post_worker_init": true, "pre_request": true,
	"post_request": true, "worker_exit": true, "worker_abort": true,
}

// gunicornOtherHooks are Gunicorn's other hooks, and what to use instead.
var gunicornOtherHooks = map[string]string{
	"on_reload":         "no Python master: caddy reload starts a new pool and logs it",
	"when_ready":        "no Python master: GET /wsgi/pools/<app>/health on the admin endpoint says when a worker is ready",
	"pre_fork":          "no Python master: use post_fork, which runs in the worker",
	"pre_exec":          "no Python master",
	"child_exit":        "no Python master: Caddy logs each worker's exit (metric caddy_wsgi_worker_restarts_total)",
	"nworkers_changed":  "no Python master: the metric caddy_wsgi_workers",
	"on_exit":           "no Python master: use worker_exit, which runs in each worker",
	"worker_int":        "not supported: worker_exit runs as the worker exits",
	"ssl_context":       "a Caddyfile tls directive",
	"on_dirty_starting": "not supported", "dirty_post_fork": "not supported",
	"dirty_worker_init": "not supported", "dirty_worker_exit": "not supported",
}

// gunicornConf is what the Gunicorn config sources said, and what became of it.
type gunicornConf struct {
	file     string         // the config file as given; "" without one
	python   string         // the interpreter that read it
	hooks    string         // the hooks option: the config file, when it defines hooks
	values   map[string]any // Gunicorn setting -> value, config file < GUNICORN_CMD_ARGS
	sources  map[string]string
	applied  []string // "name = value (source)" lines, for --print-config
	warnings []string // one per setting or hook without a counterpart
}

func (g *gunicornConf) warn(format string, args ...any) {
	g.warnings = append(g.warnings, fmt.Sprintf(format, args...))
}

// loadGunicorn reads the Gunicorn config sources, sets the flags the command line left
// unset, and returns the APP arguments (wsgi_app when none was given). With no config
// file and no GUNICORN_CMD_ARGS it changes nothing.
func loadGunicorn(fs *pflag.FlagSet, args []string, getenv func(string) string, asgi bool) (*gunicornConf, []string, error) {
	g := &gunicornConf{values: map[string]any{}, sources: map[string]string{}}
	env, envWarnings, err := parseGunicornCmdArgs(getenv("GUNICORN_CMD_ARGS"))
	if err != nil {
		return nil, nil, err
	}
	g.warnings = append(g.warnings, envWarnings...)

	// The file: -c, else GUNICORN_CMD_ARGS's -c, else ./gunicorn.conf.py if present.
	file, _ := fs.GetString("config")
	if !fs.Changed("config") {
		if v, ok := env["config"].(string); ok {
			file = v
		} else if st, err := os.Stat(gunicornDefaultConfig); err == nil && !st.IsDir() {
			file = gunicornDefaultConfig
		}
	}
	delete(env, "config")
	if file != "" {
		if err := g.readFile(fs, file, asgi); err != nil {
			return nil, nil, err
		}
	}
	for k, v := range env {
		if k == "raw_env" && g.values[k] != nil { // merged: later layers win per variable
			v = append(listValue(g.values[k]), listValue(v)...)
		}
		g.values[k], g.sources[k] = v, "GUNICORN_CMD_ARGS"
	}
	if len(args) == 0 {
		if app, ok := g.values["wsgi_app"].(string); ok && app != "" {
			args = []string{app}
		}
	}
	return g, args, g.apply(fs, asgi)
}

// readFile runs the config file with the app's interpreter and records its settings.
func (g *gunicornConf) readFile(fs *pflag.FlagSet, file string, asgi bool) error {
	g.file = file
	if ext := strings.ToLower(filepath.Ext(file)); ext == ".json" || ext == ".caddyfile" || strings.EqualFold(filepath.Base(file), "Caddyfile") {
		return fmt.Errorf("-c/--config %s: this is Gunicorn's config file (Python); a Caddy config runs with caddy run --config %s", file, file)
	}
	spec := file
	if !strings.HasPrefix(file, "python:") {
		path := strings.TrimPrefix(file, "file:")
		if st, err := os.Stat(path); err != nil || st.IsDir() {
			return fmt.Errorf("-c/--config %s: no such file", file)
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return fmt.Errorf("-c/--config %s: %w", file, err)
		}
		spec = abs
	}
	python, _ := fs.GetString("python")
	venv, _ := fs.GetString("venv")
	interp, err := workerpool.Config{Python: python, Venv: venv}.Interpreter()
	if err != nil {
		return fmt.Errorf("-c/--config %s: %w (it is run by the app's interpreter: give --venv or --python)", file, err)
	}
	g.python = interp
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, interp, "-c", gunicornConfScript, spec)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr // the file's own prints go to stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("-c/--config %s: %s could not read it: %w", file, interp, err)
	}
	var res struct {
		Error     string            `json:"error"`
		Traceback string            `json:"traceback"`
		Settings  map[string]any    `json:"settings"`
		Callables []string          `json:"callables"`
		Other     map[string]string `json:"other"`
	}
	dec := json.NewDecoder(&out)
	dec.UseNumber()
	if err := dec.Decode(&res); err != nil {
		return fmt.Errorf("-c/--config %s: unreadable answer from %s: %w", file, interp, err)
	}
	if res.Error != "" {
		msg := fmt.Sprintf("-c/--config %s: %s", file, res.Error)
		if res.Traceback != "" {
			msg += "\n" + strings.TrimRight(res.Traceback, "\n")
		}
		return fmt.Errorf("%s", msg)
	}
	known := map[string]bool{}
	for _, s := range gunicornSettings {
		known[s.name] = true
	}
	for k, v := range res.Settings {
		if known[k] { // other names are the file's own variables, as for Gunicorn
			g.values[k], g.sources[k] = v, file
		}
	}
	for k, r := range res.Other {
		if known[k] {
			return fmt.Errorf("-c/--config %s: %s = %s: want a string, number, boolean or list", file, k, r)
		}
	}
	sort.Strings(res.Callables)
	hooks := false
	for _, name := range res.Callables {
		switch {
		case asgi && (name == "pre_request" || name == "post_request"):
			g.warn("%s (hook in %s): not run by ASGI workers (nor by Gunicorn's UvicornWorker): use an ASGI middleware", name, file)
		case gunicornHooks[name]:
			hooks = true
		case gunicornOtherHooks[name] != "":
			g.warn("%s (hook in %s): %s", name, file, gunicornOtherHooks[name])
		case known[name]:
			return fmt.Errorf("-c/--config %s: %s is a function or class; want a value", file, name)
		}
	}
	if hooks {
		g.hooks = spec
	}
	return nil
}

// apply sets the flags for the settings the command line did not give, and warns once
// for each setting with no counterpart.
func (g *gunicornConf) apply(fs *pflag.FlagSet, asgi bool) error {
	for _, s := range gunicornSettings {
		v, ok := g.values[s.name]
		if !ok || v == nil || s.name == "wsgi_app" {
			continue
		}
		src := g.sources[s.name]
		flag, instead := s.flag, s.instead
		switch s.name {
		case "threads":
			if asgi {
				flag, instead = "", "ASGI workers run one event loop: --max-concurrency"
			}
		case "worker_connections":
			if asgi {
				flag, instead = "", "--max-concurrency (requests and WebSockets per worker)"
			}
		case "worker_class":
			if asgi {
				if c := fmt.Sprint(v); strings.Contains(strings.ToLower(c), "uvicorn") || strings.Contains(c, "asgi") {
					continue // how Gunicorn runs ASGI apps: asgi-server's own workers do that
				}
				flag, instead = "", "asgi-server runs asyncio workers (uvloop when installed)"
			} else if c, ok := gunicornWorkerClasses[fmt.Sprint(v)]; ok {
				v = c
			}
		case "asgi_lifespan":
			if !asgi {
				continue
			}
		case "errorlog":
			if v == "-" {
				continue // stderr: where Caddy logs
			}
		case "keepalive":
			if n, err := strconv.Atoi(fmt.Sprint(v)); err == nil && n <= 0 {
				flag, instead = "", "keep-alive stays on in Caddy; an idle connection holds no worker"
			}
		case "print_config", "reload", "preload_app":
			if v == false {
				continue
			}
		}
		if flag == "" {
			if v == false || v == "" {
				continue // the default of a switch: nothing to warn about
			}
			g.warn("%s (%s): %s", s.name, src, instead)
			continue
		}
		if g.cliOverrides(fs, s.name, flag, asgi) {
			g.applied = append(g.applied, fmt.Sprintf("%s = %s (%s; the command line overrides it)", s.name, pyRepr(v), src))
			continue
		}
		if err := g.setFlag(fs, s, flag, v); err != nil {
			return fmt.Errorf("%s = %s (%s): %w", s.name, pyRepr(v), src, err)
		}
		g.applied = append(g.applied, fmt.Sprintf("%s = %s (%s)", s.name, pyRepr(v), src))
	}
	return nil
}

// gunicornWorkerClasses maps Gunicorn's class paths to the names -k takes.
var gunicornWorkerClasses = map[string]string{
	"gunicorn.workers.sync.SyncWorker":      "sync",
	"gunicorn.workers.gthread.ThreadWorker": "gthread",
	"gunicorn.workers.ggevent.GeventWorker": "gevent",
	"egg:gunicorn#sync":                     "sync",
	"egg:gunicorn#gthread":                  "gthread",
	"egg:gunicorn#gevent":                   "gevent",
	"gevent_wsgi":                           "gevent",
	"gevent_pywsgi":                         "gevent",
}

// cliOverrides says whether the command line gave a flag that takes the place of the
// setting (for bind, any of the listening flags).
func (g *gunicornConf) cliOverrides(fs *pflag.FlagSet, setting, flag string, asgi bool) bool {
	if setting == "bind" {
		return fs.Changed("bind") || fs.Changed("listen") || (asgi && (fs.Changed("host") || fs.Changed("port")))
	}
	if setting == "raw_env" {
		return false // merged: the command line's -e win per variable
	}
	return fs.Changed(flag)
}

// setFlag sets our flag from a setting's value.
func (g *gunicornConf) setFlag(fs *pflag.FlagSet, s gunicornSetting, flag string, v any) error {
	switch s.name {
	case "bind":
		list := listValue(v)
		if len(list) != 1 {
			return fmt.Errorf("wsgi-server listens on one address; for several, write a Caddyfile with one site per address")
		}
		return fs.Set(flag, list[0])
	case "raw_env":
		sv, ok := fs.Lookup(flag).Value.(pflag.SliceValue)
		if !ok {
			return fmt.Errorf("internal: --%s is not a list", flag)
		}
		cli := sv.GetSlice()
		if !fs.Changed(flag) {
			cli = nil
		}
		return sv.Replace(append(listValue(v), cli...))
	case "forwarded_allow_ips", "pythonpath":
		return fs.Set(flag, strings.Join(listValue(v), ","))
	}
	switch x := v.(type) {
	case bool:
		return fs.Set(flag, strconv.FormatBool(x))
	case json.Number, string:
		return fs.Set(flag, fmt.Sprint(x))
	}
	return fmt.Errorf("want a single value")
}

// listValue reads a Gunicorn list setting: a list, or one string (Gunicorn's
// validate_list_string also accepts a comma-separated string for some settings).
func listValue(v any) []string {
	switch x := v.(type) {
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
		return out
	case []string:
		return x
	case string:
		if x == "" {
			return nil
		}
		return []string{x}
	}
	return []string{fmt.Sprint(v)}
}

// pyRepr shows a value the way the config file would spell it.
func pyRepr(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case bool:
		if x {
			return "True"
		}
		return "False"
	case []any, []string:
		parts := []string{}
		for _, e := range listValue(x) {
			parts = append(parts, strconv.Quote(e))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v)
}

// gunicornServerFlags applies the server-level flags (--forwarded-allow-ips,
// --keep-alive, --limit-request-*) to the HTTP server.
func gunicornServerFlags(fs *pflag.FlagSet, server *caddyhttp.Server) error {
	if ips, _ := fs.GetString("forwarded-allow-ips"); ips != "" {
		var ranges []string
		for _, ip := range strings.Split(ips, ",") {
			switch ip = strings.TrimSpace(ip); ip {
			case "":
			case "*":
				ranges = append(ranges, "0.0.0.0/0", "::/0")
			default:
				if _, err := caddyhttp.CIDRExpressionToPrefix(ip); err != nil {
					return fmt.Errorf("--forwarded-allow-ips %q: %v", ip, err)
				}
				ranges = append(ranges, ip)
			}
		}
		server.TrustedProxiesRaw = json.RawMessage(fmt.Sprintf(`{"source":"static","ranges":%s}`, mustJSON(ranges)))
	}
	if fs.Changed("keep-alive") {
		n, _ := fs.GetInt("keep-alive")
		if n < 1 {
			return fmt.Errorf("--keep-alive: %d is not a positive number of seconds", n)
		}
		server.IdleTimeout = caddy.Duration(time.Duration(n) * time.Second)
	}
	// Go bounds the request line and headers together, in bytes: Gunicorn's three limits
	// (defaults 4094, 100, 8190; 0 is unlimited) become that one bound.
	if fs.Changed("limit-request-line") || fs.Changed("limit-request-fields") || fs.Changed("limit-request-field_size") {
		limit := func(name string, def int) int {
			if !fs.Changed(name) {
				return def
			}
			n, _ := fs.GetInt(name)
			return n
		}
		line, fields, size := limit("limit-request-line", 4094), limit("limit-request-fields", 100), limit("limit-request-field_size", 8190)
		if line < 0 || fields < 0 || size < 0 {
			return fmt.Errorf("--limit-request-*: negative")
		}
		if line > 0 && fields > 0 && size > 0 {
			server.MaxHeaderBytes = line + fields*(size+2)
		}
	}
	return nil
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// report logs the warnings, and with --print-config prints the settings read to stderr
// (stdout carries the JSON config).
func (g *gunicornConf) report(printConfig bool) {
	if g == nil {
		return
	}
	if printConfig && (g.file != "" || len(g.applied) > 0) {
		var b strings.Builder
		if g.file != "" {
			fmt.Fprintf(&b, "# Gunicorn config %s (read by %s)\n", g.file, g.python)
		}
		for _, line := range g.applied {
			fmt.Fprintf(&b, "#   %s\n", line)
		}
		if g.hooks != "" {
			fmt.Fprintf(&b, "#   server hooks: from %s\n", g.hooks)
		}
		for _, w := range g.warnings {
			fmt.Fprintf(&b, "# warning: %s\n", w)
		}
		fmt.Fprint(os.Stderr, b.String())
		return
	}
	for _, w := range g.warnings {
		caddy.Log().Warn("gunicorn setting without a counterpart", zap.String("setting", w))
	}
}

// hooksSpec makes a hooks file path absolute: relative paths count from Caddy's working
// directory (as venv and chdir do), while the worker runs in chdir. Module names and
// python:MODULE are left alone.
func hooksSpec(h string) string {
	path := strings.TrimPrefix(h, "file:")
	if strings.HasPrefix(h, "python:") || (!strings.HasSuffix(path, ".py") && !strings.ContainsRune(path, os.PathSeparator)) {
		return h
	}
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return h
}
