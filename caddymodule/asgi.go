package caddymodule

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(ASGI{})
	httpcaddyfile.RegisterHandlerDirective("asgi", parseASGICaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("asgi", httpcaddyfile.Before, "file_server")
}

// ASGI serves an ASGI 3 application (FastAPI, Starlette, Django's ASGI handler) over HTTP
// from the same managed pool as `wsgi`, with every option of it: each worker runs one
// asyncio event loop with worker_connections (default 100) requests at once. WebSockets
// and lifespan events are not supported yet.
type ASGI struct {
	WSGI
}

// CaddyModule returns the Caddy module information.
func (ASGI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.asgi",
		New: func() caddy.Module { return new(ASGI) },
	}
}

// Provision runs the app with the ASGI worker class.
func (m *ASGI) Provision(ctx caddy.Context) error {
	m.WorkerClass = "asgi"
	return m.WSGI.Provision(ctx)
}

// UnmarshalCaddyfile reads `asgi <app> { ... }` with the options of `wsgi`.
func (m *ASGI) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if err := m.WSGI.UnmarshalCaddyfile(d); err != nil {
		return err
	}
	if m.WorkerClass != "" {
		return d.Err("asgi: worker_class is set by the directive itself")
	}
	return nil
}

func parseASGICaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(ASGI)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*ASGI)(nil)
	_ caddyfile.Unmarshaler       = (*ASGI)(nil)
	_ caddyhttp.MiddlewareHandler = (*ASGI)(nil)
)
