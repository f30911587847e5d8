package caddymodule

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func init() {
	caddy.RegisterModule(Handoff{})
}

// Handoff is a listener wrapper that makes `caddy reload` lose no request on a plain
// HTTP/1.1 keep-alive connection. On a reload, Caddy's old server closes every idle
// keep-alive connection at once, and a request the client sends as it closes is lost (a
// client that does not retry, or a load balancer's pooled connection, sees a reset). With
// this wrapper, such a connection is not closed: its pending read is interrupted (a read
// deadline in the past: no byte is taken from the socket) and the connection goes to the
// new config's server, which reads the request. Bytes the old server read of that request
// are replayed to the new one; when the old server already holds a whole request head,
// it serves that request itself, with Connection: close (see handoffConn). TLS connections
// (Close sends close_notify), HTTP/2 and hijacked connections (WebSockets) are closed as
// before. The Caddyfile's wsgi and asgi directives (in a site block) and the wsgi-server
// and asgi-server commands add it; in JSON, add {"wrapper": "wsgi_handoff"} to the
// server's listener_wrappers.
type Handoff struct {
	keys []string
}

// CaddyModule returns the Caddy module information.
func (Handoff) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.wsgi_handoff",
		New: func() caddy.Module { return new(Handoff) },
	}
}

// hubs holds, by listener address, where connections go from one config to the next.
var hubs = caddy.NewUsagePool()

// hub receives the connections an old server let go; the newest server accepts them.
type hub struct {
	mu     sync.Mutex
	ch     chan *movedConn
	closed bool
}

type movedConn struct {
	net.Conn
	prefix []byte // read from the socket, not yet seen by a server
}

func (h *hub) give(c *movedConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		select {
		case h.ch <- c:
			return
		default:
		}
	}
	c.Close()
}

// Destruct closes the connections nobody took (the last config is gone).
func (h *hub) Destruct() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for {
		select {
		case c := <-h.ch:
			c.Close()
		default:
			return nil
		}
	}
}

// WrapListener wraps ln; the same address shares a hub across config generations.
func (m *Handoff) WrapListener(ln net.Listener) net.Listener {
	if _, ok := ln.(*handoffListener); ok {
		return ln // added twice (two site blocks on one server)
	}
	key := ln.Addr().Network() + "/" + ln.Addr().String()
	v, _, _ := hubs.LoadOrNew(key, func() (caddy.Destructor, error) {
		return &hub{ch: make(chan *movedConn, 1024)}, nil
	})
	m.keys = append(m.keys, key)
	l := &handoffListener{Listener: ln, hub: v.(*hub), accepted: make(chan net.Conn), done: make(chan struct{}), pumpDone: make(chan struct{})}
	go l.pump()
	return l
}

// Cleanup releases this config's hold on its hubs.
func (m *Handoff) Cleanup() error {
	for _, k := range m.keys {
		hubs.Delete(k)
	}
	return nil
}

type handoffListener struct {
	net.Listener
	hub       *hub
	accepted  chan net.Conn
	done      chan struct{} // closed by Close: the server is shutting down
	closeOnce sync.Once
	pumpDone  chan struct{}
	pumpErr   error
}

// pump accepts from the socket, so that Accept can also take handed-over connections.
func (l *handoffListener) pump() {
	defer close(l.pumpDone)
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			l.pumpErr = err
			return
		}
		select {
		case l.accepted <- c:
		case <-l.done:
			l.hub.give(&movedConn{Conn: c}) // accepted as this server stopped: the next one serves it
		}
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	if l.shuttingDown() {
		return nil, net.ErrClosed // a moved connection waits for the next server
	}
	select {
	case c := <-l.accepted:
		return l.wrap(c, nil), nil
	case mc := <-l.hub.ch:
		return l.wrap(mc.Conn, mc.prefix), nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.pumpDone:
		return nil, l.pumpErr
	}
}

func (l *handoffListener) wrap(c net.Conn, prefix []byte) net.Conn {
	if _, ok := c.(*tls.Conn); ok {
		return c // placed after TLS: closing sends close_notify, so it is never handed over
	}
	return newHandoffConn(c, l, prefix)
}

func (l *handoffListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *handoffListener) shuttingDown() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// handlerDirective is httpcaddyfile.RegisterHandlerDirective's parsing, plus the Handoff
// listener wrapper for the site's server: a reload then loses no request. (Inside a
// handle or route block, Caddy keeps only routes: such a site adds the wrapper with the
// servers global option, or in JSON; see the README.)
func handlerDirective(setup httpcaddyfile.UnmarshalHandlerFunc) httpcaddyfile.UnmarshalFunc {
	return func(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
		if !h.Next() {
			return nil, h.ArgErr()
		}
		matcherSet, err := h.ExtractMatcherSet()
		if err != nil {
			return nil, err
		}
		val, err := setup(h)
		if err != nil {
			return nil, err
		}
		return append(h.NewRoute(matcherSet, val), httpcaddyfile.ConfigValue{Class: "listener_wrapper", Value: new(Handoff)}), nil
	}
}

// handoffWrapperJSON is the wrapper in a server's listener_wrappers.
var handoffWrapperJSON = json.RawMessage(`{"wrapper":"wsgi_handoff"}`)

// UnmarshalCaddyfile parses `wsgi_handoff` (no arguments), for the servers global
// option's listener_wrappers.
func (m *Handoff) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// Interface guards
var (
	_ caddy.ListenerWrapper = (*Handoff)(nil)
	_ caddy.CleanerUpper    = (*Handoff)(nil)
	_ caddyfile.Unmarshaler = (*Handoff)(nil)
)
