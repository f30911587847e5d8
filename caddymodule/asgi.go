package caddymodule

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/caddy-wsgi/caddy-wsgi/websocket"
	"github.com/caddy-wsgi/caddy-wsgi/workerpool"

	// WebSockets over HTTP/2 (RFC 8441) without GODEBUG: see the package.
	_ "github.com/caddy-wsgi/caddy-wsgi/caddymodule/internal/xconnect"
)

func init() {
	caddy.RegisterModule(ASGI{})
	httpcaddyfile.RegisterDirective("asgi", handlerDirective(parseASGICaddyfile))
	httpcaddyfile.RegisterDirectiveOrder("asgi", httpcaddyfile.Before, "file_server")
}

// ASGI serves an ASGI 3 application (FastAPI, Starlette, Django's ASGI handler) from the
// same managed pool as `wsgi`, with every option of it. Each worker runs one asyncio event
// loop (uvloop when the app's environment has it) with up to max_concurrency requests and
// WebSockets at once. Caddy accepts WebSockets over HTTP/1.1, HTTP/2 (RFC 8441: the module
// turns on Go's extended CONNECT, off by default, unless GODEBUG sets http2xconnect) and
// HTTP/3 (RFC 9220), and relays whole messages (permessage-deflate, RFC 7692, when the
// client offers it); close codes pass through both ways. A request past `timeout` gets 504
// and the app http.disconnect; the worker is killed only if its event loop stays blocked
// 5 s more. An open WebSocket has no timeout.
type ASGI struct {
	WSGI

	// Concurrent requests and WebSockets per worker. Default 1000. (worker_connections is
	// accepted as another name for it.)
	MaxConcurrency int `json:"max_concurrency,omitempty"`

	// The ASGI lifespan protocol, per worker: "auto" (default: startup runs before the
	// worker takes requests; an app that raises on it is taken as not supporting
	// lifespan), "on" (that is a boot failure too) or "off". A worker whose startup fails
	// (lifespan.startup.failed) never takes a request: the reason is logged and the
	// worker retried with backoff. Shutdown runs when the worker stops, within
	// graceful_timeout.
	Lifespan string `json:"lifespan,omitempty"`

	// The largest WebSocket message a client may send, in bytes (after decompression),
	// inclusive: a larger one closes the connection with 1009. Default 16 MiB (Uvicorn's
	// ws_max_size), at most 1 GiB.
	MaxMessageSize int64 `json:"max_message_size,omitempty"`

	// WebSocket compression, permessage-deflate (RFC 7692): "on" (default: accepted when
	// the client offers it, as browsers do, with context takeover both ways unless the
	// client asks otherwise) or "off". A compressing connection holds about 1 MB more
	// memory for its compressor after its first compressed message.
	WebSocketCompression string `json:"websocket_compression,omitempty"`
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
	if m.WorkerClass != "" && workerpool.WorkerClass(m.WorkerClass) != workerpool.ClassASGI {
		return fmt.Errorf("asgi: worker_class %q: the asgi handler sets its own", m.WorkerClass)
	}
	if m.MaxConcurrency > 0 && m.WorkerConnections > 0 && m.MaxConcurrency != m.WorkerConnections {
		return errors.New("asgi: max_concurrency and worker_connections are the same setting; set one")
	}
	if err := workerpool.ValidateLifespan(m.Lifespan); err != nil {
		return fmt.Errorf("asgi: %w", err)
	}
	if m.MaxMessageSize < 0 || m.MaxMessageSize > 1<<30 {
		return fmt.Errorf("asgi: max_message_size %d: want 1 byte to 1 GiB", m.MaxMessageSize)
	}
	switch m.WebSocketCompression {
	case "", "on", "off":
	default:
		return fmt.Errorf("asgi: websocket_compression %q: want on or off", m.WebSocketCompression)
	}
	return m.WSGI.provision(ctx, m.asgiKind())
}

// asgiKind is the asgi handler's part of the settings: its worker class, concurrency,
// lifespan and WebSocket options.
func (m *ASGI) asgiKind() handlerKind {
	connections := m.WorkerConnections
	if m.MaxConcurrency > 0 {
		connections = m.MaxConcurrency
	}
	return handlerKind{
		name:        "asgi",
		class:       workerpool.ClassASGI,
		connections: connections,
		lifespan:    m.Lifespan,
		ws:          websocket.Options{MaxMessage: int(m.MaxMessageSize), NoCompression: m.WebSocketCompression == "off"},
	}
}

// UnmarshalCaddyfile reads `asgi <app> { ... }`: the options of `wsgi`, plus
// max_concurrency <n>, lifespan auto|on|off, max_message_size <size> and
// websocket_compression on|off.
func (m *ASGI) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return m.unmarshalDirective(d, "asgi", func(d *caddyfile.Dispenser) (bool, error) {
		switch d.Val() {
		case "max_concurrency":
			var v string
			if err := oneArg(d, &v); err != nil {
				return true, err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 10000 {
				return true, d.Errf("max_concurrency: %q is not an integer from 1 to 10000", v)
			}
			m.MaxConcurrency = n
			return true, nil
		case "lifespan":
			if err := oneArg(d, &m.Lifespan); err != nil {
				return true, err
			}
			if m.Lifespan == "" || workerpool.ValidateLifespan(m.Lifespan) != nil {
				return true, d.Errf("lifespan: %q is not auto, on or off", m.Lifespan)
			}
			return true, nil
		case "max_message_size":
			var v string
			if err := oneArg(d, &v); err != nil {
				return true, err
			}
			size, err := humanize.ParseBytes(v)
			if err != nil || size == 0 || size > 1<<30 {
				return true, d.Errf("max_message_size: %q is not a size between 1B and 1GiB", v)
			}
			m.MaxMessageSize = int64(size)
			return true, nil
		case "websocket_compression":
			if err := oneArg(d, &m.WebSocketCompression); err != nil {
				return true, err
			}
			if m.WebSocketCompression != "on" && m.WebSocketCompression != "off" {
				return true, d.Errf("websocket_compression: %q is not on or off", m.WebSocketCompression)
			}
			return true, nil
		case "worker_class", "threads":
			return true, d.Errf("asgi: %s is set by the directive itself (use max_concurrency)", d.Val())
		}
		return false, nil
	})
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
