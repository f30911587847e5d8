package caddymodule

import (
	"slices"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/caddy-wsgi/caddy-wsgi/workerpool"
)

func init() {
	httpcaddyfile.RegisterDirective("wsgi", handlerDirective(parseCaddyfile))
	// The slot of reverse_proxy and php_fastcgi: after respond, before file_server, so
	// a site needs no `order` line or `route` block.
	httpcaddyfile.RegisterDirectiveOrder("wsgi", httpcaddyfile.Before, "file_server")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(WSGI)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	wsgi <app> {
//	    python           <path>
//	    venv             <dir>
//	    chdir            <dir>
//	    pythonpath       <dir>...
//	    env              <key> <value>
//	    workers          <n>
//	    threads          <n>
//	    queue_timeout    <duration>
//	    max_queue        <n>
//	    buffer_body      <size>
//	    script_name      <prefix>
//	    boot_timeout     <duration>
//	    graceful_timeout <duration>
//	    timeout          <duration>|0
//	    max_requests     <n>
//	    max_requests_jitter <n>
//	    max_lifetime     <duration>
//	    max_lifetime_jitter <duration>
//	    max_rss          <size>
//	    name             <name>
//	    workers          <min> <max>
//	    idle_timeout     <duration>
//	    reload
//	    hooks            <module>
//	    preload
//	    user             <user>
//	    group            <group>
//	    env_inherit      off|<name>...
//	    env_file         <path>...
//	    worker_class     sync|gevent
//	    worker_connections <n>
//	}
func (m *WSGI) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return m.unmarshalDirective(d, "wsgi", nil)
}

// unmarshalDirective parses `<directive> <app> { options }`; extra, if set, is offered
// each option first and reports whether it was its own.
func (m *WSGI) unmarshalDirective(d *caddyfile.Dispenser, directive string, extra func(*caddyfile.Dispenser) (bool, error)) error {
	d.Next() // directive name
	if d.NextArg() {
		m.App = d.Val()
		if err := workerpool.ValidateAppSpec(m.App); err != nil {
			return d.Err(err.Error())
		}
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		if extra != nil {
			done, err := extra(d)
			if err != nil {
				return err
			}
			if done {
				continue
			}
		}
		if err := m.unmarshalOption(d); err != nil {
			return err
		}
	}
	if m.App == "" {
		return d.Errf("%s needs an app: %s module:callable", directive, directive)
	}
	return nil
}

func (m *WSGI) unmarshalOption(d *caddyfile.Dispenser) error {
	switch opt := d.Val(); opt {
	case "app":
		if err := oneArg(d, &m.App); err != nil {
			return err
		}
		if err := workerpool.ValidateAppSpec(m.App); err != nil {
			return d.Err(err.Error())
		}
		return nil
	case "python":
		return oneArg(d, &m.Python)
	case "venv":
		return oneArg(d, &m.Venv)
	case "chdir":
		return oneArg(d, &m.Chdir)
	case "script_name":
		return oneArg(d, &m.ScriptName)
	case "pythonpath":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.ArgErr()
		}
		m.PythonPath = append(m.PythonPath, args...)
		return nil
	case "env":
		args := d.RemainingArgs()
		if len(args) != 2 {
			return d.Errf("env needs a name and a value, got %d arguments", len(args))
		}
		if m.Env == nil {
			m.Env = map[string]string{}
		}
		m.Env[args[0]] = args[1]
		return nil
	case "workers":
		args := d.RemainingArgs()
		if len(args) < 1 || len(args) > 2 {
			return d.Err("workers takes <n>, or <min> <max> to autoscale")
		}
		ns := make([]int, len(args))
		for i, a := range args {
			n, err := strconv.Atoi(a)
			if err != nil || n < 1 {
				return d.Errf("workers: %q is not a positive integer", a)
			}
			ns[i] = n
		}
		m.Workers = ns[0]
		if len(ns) == 2 {
			if ns[1] < ns[0] {
				return d.Errf("workers: max %d is below min %d", ns[1], ns[0])
			}
			m.MaxWorkers = ns[1]
		}
		return nil
	case "max_workers":
		return positiveInt(d, &m.MaxWorkers)
	case "idle_timeout":
		return duration(d, &m.IdleTimeout)
	case "reload":
		return flag(d, &m.Reload)
	case "preload":
		return flag(d, &m.Preload)
	case "hooks":
		return oneArg(d, &m.Hooks)
	case "worker_class":
		if err := oneArg(d, &m.WorkerClass); err != nil {
			return err
		}
		if m.WorkerClass == "" || !workerpool.WorkerClass(m.WorkerClass).ServesWSGI() {
			return d.Errf("worker_class %q: want sync or gevent", m.WorkerClass)
		}
		return nil
	case "worker_connections":
		return positiveInt(d, &m.WorkerConnections)
	case "user":
		return oneArg(d, &m.User)
	case "group":
		return oneArg(d, &m.Group)
	case "env_file":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.Err("env_file takes one or more paths")
		}
		// Checked here for the Caddyfile's line, and again at each worker start.
		if _, err := workerpool.LoadEnvFiles(args); err != nil {
			return d.Err(err.Error())
		}
		m.EnvFile = append(m.EnvFile, args...)
		return nil
	case "env_inherit":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.Err("env_inherit takes off, or the names of the variables to pass")
		}
		if len(args) > 1 && slices.Contains(args, "off") {
			return d.Err("env_inherit off takes no names")
		}
		m.EnvInherit = args
		return nil
	case "threads":
		return positiveInt(d, &m.Threads)
	case "max_queue":
		return positiveInt(d, &m.MaxQueue)
	case "queue_timeout":
		return duration(d, &m.QueueTimeout)
	case "boot_timeout":
		return duration(d, &m.BootTimeout)
	case "graceful_timeout":
		return duration(d, &m.GracefulTimeout)
	case "timeout":
		var t caddy.Duration
		if d.CountRemainingArgs() == 1 && d.NextArg() {
			if d.Val() == "0" || d.Val() == "off" {
				m.Timeout = &t
				return nil
			}
			d.Prev()
		}
		if err := duration(d, &t); err != nil {
			return err
		}
		m.Timeout = &t
		return nil
	case "max_requests":
		return count(d, &m.MaxRequests)
	case "max_requests_jitter":
		return count(d, &m.MaxRequestsJitter)
	case "max_lifetime":
		return duration(d, &m.MaxLifetime)
	case "max_lifetime_jitter":
		return duration(d, &m.MaxLifetimeJitter)
	case "max_rss":
		var s string
		if err := oneArg(d, &s); err != nil {
			return err
		}
		size, err := humanize.ParseBytes(s)
		if err != nil || size == 0 {
			return d.Errf("max_rss: %q is not a size", s)
		}
		m.MaxRSS = int64(size)
		return nil
	case "name":
		return oneArg(d, &m.Name)
	case "buffer_body":
		var s string
		if err := oneArg(d, &s); err != nil {
			return err
		}
		size, err := humanize.ParseBytes(s)
		if err != nil || size == 0 || size > 1<<30 {
			return d.Errf("buffer_body: %q is not a size between 1B and 1GiB", s)
		}
		m.BufferBody = int64(size)
		return nil
	default:
		return d.Errf("unrecognized wsgi option %q", opt)
	}
}

func flag(d *caddyfile.Dispenser, dst *bool) error {
	if d.NextArg() {
		return d.Errf("%s takes no value", d.Val())
	}
	*dst = true
	return nil
}

func oneArg(d *caddyfile.Dispenser, dst *string) error {
	opt := d.Val()
	if !d.NextArg() {
		return d.Errf("%s needs a value", opt)
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.Errf("%s takes one value", opt)
	}
	return nil
}

func positiveInt(d *caddyfile.Dispenser, dst *int) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return d.Errf("%s: %q is not a positive integer", opt, s)
	}
	*dst = n
	return nil
}

func count(d *caddyfile.Dispenser, dst *int64) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return d.Errf("%s: %q is not a non-negative integer", opt, s)
	}
	*dst = n
	return nil
}

func duration(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	v, err := caddy.ParseDuration(s)
	if err != nil || v <= 0 {
		return d.Errf("%s: %q is not a positive duration", opt, s)
	}
	*dst = caddy.Duration(v)
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*WSGI)(nil)
