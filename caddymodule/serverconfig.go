package caddymodule

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/spf13/pflag"

	"github.com/caddy-wsgi/caddy-wsgi/workerpool"
)

// serverConfig builds the Caddy config of `caddy wsgi-server` (or asgi-server), step by
// step: the Gunicorn config, the handler, its routes, the server and its address, logs
// and admin. Each step checks its flags in the order the errors are reported.
func serverConfig(fs *pflag.FlagSet, args []string, getenv func(string) string, asgi bool) (*caddy.Config, wsgiServerSummary, error) {
	sum := wsgiServerSummary{kind: "WSGI"}
	if asgi {
		sum.kind = "ASGI"
	}
	gc, args, err := loadGunicorn(fs, args, getenv, asgi)
	if err != nil {
		return nil, sum, err
	}
	sum.gunicorn = gc
	h, err := appFlag(args, asgi)
	if err != nil {
		return nil, sum, err
	}
	sum.app = h.App
	if err := processFlags(fs, &h, getenv, asgi); err != nil {
		return nil, sum, err
	}
	if err := interpreterFlags(fs, &h, gc); err != nil {
		return nil, sum, err
	}
	if err := h.Validate(); err != nil {
		return nil, sum, err
	}
	routes, err := appRoutes(fs, h, asgi)
	if err != nil {
		return nil, sum, err
	}
	listen, err := listenFlags(fs, asgi)
	if err != nil {
		return nil, sum, err
	}
	server, address, err := httpServer(fs, routes, listen, getenv)
	if err != nil {
		return nil, sum, err
	}
	sum.address = address
	logging, accessLog, err := wsgiServerLogging(flagString(fs, "access-logfile"), flagString(fs, "log-level"))
	if err != nil {
		return nil, sum, err
	}
	if accessLog || flagBool(fs, "access-log") {
		server.Logs = &caddyhttp.ServerLogConfig{}
	}
	persist := false
	cfg := &caddy.Config{
		Admin:   &caddy.AdminConfig{Config: &caddy.ConfigSettings{Persist: &persist}},
		Logging: logging,
		AppsRaw: caddy.ModuleMap{
			"http": caddyconfig.JSON(caddyhttp.App{Servers: map[string]*caddyhttp.Server{"wsgi": server}}, nil),
		},
	}
	if err := adminFlag(fs, cfg); err != nil {
		return nil, sum, err
	}
	return cfg, sum, nil
}

func flagString(fs *pflag.FlagSet, name string) string { v, _ := fs.GetString(name); return v }

func flagBool(fs *pflag.FlagSet, name string) bool { v, _ := fs.GetBool(name); return v }

// appFlag reads APP, the one positional argument.
func appFlag(args []string, asgi bool) (WSGI, error) {
	command, example := "wsgi-server", "myproject.wsgi:application"
	if asgi {
		command, example = "asgi-server", "main:app"
	}
	switch {
	case len(args) == 0:
		return WSGI{}, fmt.Errorf("missing APP: caddy %s [flags] module:callable (e.g. %s)", command, example)
	case len(args) > 1:
		return WSGI{}, fmt.Errorf("one APP expected, got %d arguments: %q (flags go before or after APP; quote values with spaces)", len(args), args)
	}
	h := WSGI{App: args[0]}
	if err := workerpool.ValidateAppSpec(h.App); err != nil {
		return h, fmt.Errorf("APP: %w", err)
	}
	return h, nil
}

// processFlags reads the workers (WEB_CONCURRENCY by default), their class and threads,
// timeouts and recycling.
func processFlags(fs *pflag.FlagSet, h *WSGI, getenv func(string) string, asgi bool) error {
	h.Workers, _ = fs.GetInt("workers")
	if !fs.Changed("workers") {
		if v := strings.TrimSpace(getenv("WEB_CONCURRENCY")); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fmt.Errorf("WEB_CONCURRENCY=%q is not a positive integer (it sets the default of --workers)", v)
			}
			h.Workers = n
		}
	} else if h.Workers < 1 {
		return fmt.Errorf("--workers: %d is not a positive integer", h.Workers)
	}
	if !asgi {
		if err := workerFlags(fs, h); err != nil {
			return err
		}
	}
	// Timeouts: Gunicorn takes seconds; a Caddy duration works too.
	if fs.Changed("timeout") {
		d, err := flagDuration("timeout", flagString(fs, "timeout"), true)
		if err != nil {
			return err
		}
		t := caddy.Duration(d)
		h.Timeout = &t
	}
	if fs.Changed("graceful-timeout") {
		d, err := flagDuration("graceful-timeout", flagString(fs, "graceful-timeout"), false)
		if err != nil {
			return err
		}
		h.GracefulTimeout = caddy.Duration(d)
	}
	h.MaxRequests, _ = fs.GetInt64("max-requests")
	h.MaxRequestsJitter, _ = fs.GetInt64("max-requests-jitter")
	if h.MaxRequests < 0 {
		return fmt.Errorf("--max-requests: %d is negative", h.MaxRequests)
	}
	if h.MaxRequestsJitter < 0 {
		return fmt.Errorf("--max-requests-jitter: %d is negative", h.MaxRequestsJitter)
	}
	return nil
}

// interpreterFlags reads the interpreter, its environment, and how the workers start.
func interpreterFlags(fs *pflag.FlagSet, h *WSGI, gc *gunicornConf) error {
	h.Chdir, h.Venv, h.Python = flagString(fs, "chdir"), flagString(fs, "venv"), flagString(fs, "python")
	for _, p := range strings.Split(flagString(fs, "pythonpath"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			h.PythonPath = append(h.PythonPath, p)
		}
	}
	envs, _ := fs.GetStringArray("env")
	for _, kv := range envs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" || strings.ContainsAny(k, " \t") {
			return fmt.Errorf("-e/--env %q: want KEY=VALUE", kv)
		}
		if h.Env == nil {
			h.Env = map[string]string{}
		}
		h.Env[k] = v
	}
	if err := envFileFlag(fs, h); err != nil {
		return err
	}
	h.Reload, h.Preload = flagBool(fs, "reload"), flagBool(fs, "preload")
	h.User, h.Group, h.Hooks = flagString(fs, "user"), flagString(fs, "group"), gc.hooks
	return nil
}

// appRoutes are the static prefixes first, then the app (behind X-Accel-Redirect when
// asked).
func appRoutes(fs *pflag.FlagSet, h WSGI, asgi bool) (caddyhttp.RouteList, error) {
	var routes caddyhttp.RouteList
	statics, _ := fs.GetStringArray("static")
	for _, s := range statics {
		r, err := staticRoute(s)
		if err != nil {
			return nil, err
		}
		routes = append(routes, r)
	}
	handler := caddyconfig.JSONModuleObject(h, "handler", "wsgi", nil)
	if asgi {
		a, err := asgiFlags(fs, h)
		if err != nil {
			return nil, err
		}
		handler = caddyconfig.JSONModuleObject(a, "handler", "asgi", nil)
	}
	appRoute := caddyhttp.Route{HandlersRaw: []json.RawMessage{handler}}
	if accel, err := xAccelHandler(fs); err != nil {
		return nil, err
	} else if accel != nil {
		appRoute.HandlersRaw = []json.RawMessage{accel, handler}
	}
	return append(routes, appRoute), nil
}

// listenFlags reads the address from --listen, -b/--bind or (asgi-server) --host and
// --port; "" when none is given.
func listenFlags(fs *pflag.FlagSet, asgi bool) (string, error) {
	listen := flagString(fs, "listen")
	if bind := flagString(fs, "bind"); bind != "" {
		if listen != "" && listen != bind {
			return "", fmt.Errorf("--listen %q and -b/--bind %q disagree: give one", listen, bind)
		}
		listen = bind
	}
	if asgi && (fs.Changed("host") || fs.Changed("port")) {
		if listen != "" {
			return "", fmt.Errorf("--host/--port and --listen/-b both set the address: give one")
		}
		host, port := flagString(fs, "host"), 8000
		if fs.Changed("port") {
			port, _ = fs.GetInt("port")
		}
		if host == "" {
			host = "127.0.0.1"
		}
		listen = net.JoinHostPort(host, strconv.Itoa(port))
	}
	if listen == "" {
		return "", nil
	}
	return listenAddress(listen)
}

// httpServer is the server: with --domain, one site with automatic HTTPS; otherwise
// plain HTTP on the address (default 127.0.0.1:8000, or 0.0.0.0:$PORT). address is
// what the command logs.
func httpServer(fs *pflag.FlagSet, routes caddyhttp.RouteList, listen string, getenv func(string) string) (server *caddyhttp.Server, address string, err error) {
	server = &caddyhttp.Server{ListenerWrappersRaw: []json.RawMessage{handoffWrapperJSON}}
	if domain := flagString(fs, "domain"); domain != "" {
		addr, err := domainAddress(domain)
		if err != nil {
			return nil, "", err
		}
		if listen == "" {
			listen = ":" + addr.Port
		}
		routes = hostSite(addr.Host, routes)
		if addr.Scheme == "http" {
			server.AutoHTTPS = &caddyhttp.AutoHTTPSConfig{Disabled: true}
		}
		address = addr.Scheme + "://" + addr.Host + ":" + addr.Port
	} else {
		if listen == "" {
			if listen, err = defaultListen(getenv); err != nil {
				return nil, "", err
			}
		}
		// Plain HTTP on the given address: no certificates, no redirects.
		server.AutoHTTPS = &caddyhttp.AutoHTTPSConfig{Disabled: true}
		address = "http://" + listen
	}
	if err := gunicornServerFlags(fs, server); err != nil {
		return nil, "", err
	}
	server.Listen = []string{listen}
	server.Routes = routes
	return server, address, nil
}

// domainAddress reads --domain with its scheme and port filled in: https on 443 unless
// it says http or port 80.
func domainAddress(domain string) (httpcaddyfile.Address, error) {
	addr, err := httpcaddyfile.ParseAddress(domain)
	if err != nil {
		return addr, fmt.Errorf("--domain %q: %v", domain, err)
	}
	if addr.Host == "" || addr.Path != "" {
		return addr, fmt.Errorf("--domain %q: want a host name such as example.com", domain)
	}
	httpPort := strconv.Itoa(caddyhttp.DefaultHTTPPort)
	if addr.Scheme == "" {
		addr.Scheme = "https"
		if addr.Port == httpPort {
			addr.Scheme = "http"
		}
	}
	if addr.Port == "" {
		addr.Port = strconv.Itoa(caddyhttp.DefaultHTTPSPort)
		if addr.Scheme == "http" {
			addr.Port = httpPort
		}
	}
	return addr, nil
}

// hostSite wraps routes in one site matched on host, as the Caddyfile adapter and
// `caddy reverse-proxy --from` build it: automatic HTTPS finds the name there.
func hostSite(host string, routes caddyhttp.RouteList) caddyhttp.RouteList {
	return caddyhttp.RouteList{{
		MatcherSetsRaw: []caddy.ModuleMap{{"host": caddyconfig.JSON(caddyhttp.MatchHost{host}, nil)}},
		HandlersRaw: []json.RawMessage{caddyconfig.JSONModuleObject(caddyhttp.Subroute{Routes: routes},
			"handler", "subroute", nil)},
		Terminal: true,
	}}
}

// defaultListen is 127.0.0.1:8000, or 0.0.0.0:$PORT when PORT is set (as on Heroku).
func defaultListen(getenv func(string) string) (string, error) {
	port := strings.TrimSpace(getenv("PORT"))
	if port == "" {
		return "127.0.0.1:8000", nil
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("PORT=%q is not a port number (it sets the default of --listen)", port)
	}
	return "0.0.0.0:" + port, nil
}

// adminFlag points the admin endpoint at --admin ("off" disables it).
func adminFlag(fs *pflag.FlagSet, cfg *caddy.Config) error {
	switch admin := flagString(fs, "admin"); admin {
	case "":
	case "off":
		cfg.Admin.Disabled = true
	default:
		if _, err := caddy.ParseNetworkAddress(admin); err != nil {
			return fmt.Errorf("--admin %q: %v", admin, err)
		}
		cfg.Admin.Listen = admin
	}
	return nil
}
