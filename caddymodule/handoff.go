package caddymodule

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

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
// new config's server, which reads the request. Bytes a racing read did get are replayed.
//
// A connection is handed over only when nothing of the next request is buffered by the
// old server: its pending read is the first read into an empty buffer. TLS connections
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
	select {
	case c := <-l.accepted:
		return l.wrap(c, nil, 0), nil
	case mc := <-l.hub.ch:
		return l.wrap(mc.Conn, mc.prefix, plainHTTP1), nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.pumpDone:
		return nil, l.pumpErr
	}
}

func (l *handoffListener) wrap(c net.Conn, prefix []byte, kind int8) net.Conn {
	if _, ok := c.(*tls.Conn); ok {
		return c // placed after TLS: closing sends close_notify, so it is never handed over
	}
	return &handoffConn{Conn: c, l: l, prefix: prefix, kind: kind}
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

const (
	plainHTTP1 int8 = 1
	otherProto int8 = -1
)

var longAgo = time.Unix(1, 0)

// serverReadBuffer is the size of net/http's per-connection read buffer (bufio's
// default). Between requests, net/http waits for the next one with a read into that
// buffer: a read of its full size means the buffer holds nothing of a next request.
const serverReadBuffer = 4096

// handoffConn is a server connection that can move to the next config's server.
type handoffConn struct {
	net.Conn
	l *handoffListener

	mu       sync.Mutex
	prefix   []byte // replayed before reading the socket
	readLen  int    // size of the pending read
	reading  bool
	kind     int8 // plainHTTP1, otherProto, or 0 before the first bytes
	hijacked bool // SetDeadline: net/http hijacked it (WebSocket, h2c upgrade)
	moving   bool // handed over: the pending read returns and passes the conn on
	moved    atomic.Bool

	// The last response as written, for a connection Shutdown closes right after a
	// response sent as keep-alive (its request was running when the reload began).
	keepAlive  bool   // its head had no Connection: close
	chunked    bool   // its body is chunked ...
	lastChunk  bool   // ... and the last write ended with the last chunk
	bodyLeft   int64  // Content-Length bytes not yet written; -1: unknown
	readsAfter int    // bytes read since the last write
	after      []byte // those bytes, when read during a shutdown (the server may drop them)
}

func (c *handoffConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.moving {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		c.mu.Unlock()
		return n, nil
	}
	c.reading, c.readLen = true, len(p)
	c.mu.Unlock()
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.reading = false
	c.readsAfter += n
	if n > 0 && (len(p) == 1 || c.l.shuttingDown()) { // len 1: net/http's read during a request
		c.after = append(c.after, p[:n]...)
	}
	if c.kind == 0 && n > 0 {
		c.kind = otherProto
		if b := p[0]; 'A' <= b && b <= 'Z' && !bytes.HasPrefix(p[:n], []byte("PRI ")) {
			c.kind = plainHTTP1
		}
	}
	if c.moving {
		// Close handed the connection over while this read waited: what it got belongs
		// to the next server.
		keep := append([]byte(nil), p[:n]...)
		c.mu.Unlock()
		c.Conn.SetReadDeadline(time.Time{})
		c.moved.Store(true)
		c.l.hub.give(&movedConn{Conn: c.Conn, prefix: keep})
		return 0, net.ErrClosed
	}
	c.mu.Unlock()
	return n, err
}

// Close is called by net/http's Shutdown on an idle keep-alive connection (from another
// goroutine, while the connection's own goroutine waits in Read for the next request).
func (c *handoffConn) Close() error {
	c.mu.Lock()
	if c.moving {
		c.mu.Unlock()
		return nil
	}
	if c.reading && c.readLen == serverReadBuffer && c.kind == plainHTTP1 && !c.hijacked && c.l.shuttingDown() {
		c.moving = true
		c.mu.Unlock()
		return c.Conn.SetReadDeadline(longAgo) // wakes the Read, which passes the conn on
	}
	if !c.reading && c.kind == plainHTTP1 && !c.hijacked && c.l.shuttingDown() && c.responseDone() {
		// The server closes it after a response that told the client to keep it: the
		// client may be sending its next request already. Nothing of it was read.
		c.moving = true
		c.mu.Unlock()
		c.moved.Store(true)
		c.l.hub.give(&movedConn{Conn: c.Conn, prefix: c.after})
		return nil
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// responseDone reports that the last response was keep-alive and complete, and that
// what was read after it was kept (a client that does not pipeline sends its next
// request only once it has the whole response, so those bytes start that request).
func (c *handoffConn) responseDone() bool {
	if !c.keepAlive || c.readsAfter != len(c.after) {
		return false
	}
	if c.chunked {
		return c.lastChunk
	}
	return c.bodyLeft == 0
}

var (
	status11   = []byte("HTTP/1.1 ")
	headEnd    = []byte("\r\n\r\n")
	connClose  = []byte("\r\nConnection: close\r\n")
	teChunked  = []byte("\r\nTransfer-Encoding: chunked\r\n")
	contentLen = []byte("\r\nContent-Length: ")
	lastChunk  = []byte("0\r\n\r\n")
)

func (c *handoffConn) Write(p []byte) (int, error) {
	if c.moved.Load() {
		return 0, net.ErrClosed
	}
	c.mu.Lock()
	c.track(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// track follows the responses written (net/http writes a response head at the start of
// a write), enough to tell when the last one is complete.
func (c *handoffConn) track(p []byte) {
	c.readsAfter, c.after = 0, nil
	if bytes.HasPrefix(p, status11) {
		c.keepAlive, c.chunked, c.lastChunk, c.bodyLeft = false, false, false, -1
		end := bytes.Index(p, headEnd)
		if end < 0 {
			return
		}
		head := p[:end+2]
		c.keepAlive = !bytes.Contains(head, connClose)
		if c.chunked = bytes.Contains(head, teChunked); c.chunked {
			c.lastChunk = bytes.HasSuffix(p, lastChunk)
			return
		}
		if i := bytes.Index(head, contentLen); i >= 0 {
			var n int64
			for _, b := range head[i+len(contentLen):] {
				if b < '0' || b > '9' {
					break
				}
				n = n*10 + int64(b-'0')
			}
			c.bodyLeft = n - int64(len(p)-end-4)
		}
		return
	}
	if c.chunked {
		c.lastChunk = bytes.HasSuffix(p, lastChunk)
	} else if c.bodyLeft > 0 {
		c.bodyLeft -= int64(len(p))
	}
}

// ReadFrom keeps sendfile (net/http sends files through the connection's ReadFrom).
func (c *handoffConn) ReadFrom(r io.Reader) (int64, error) {
	c.mu.Lock()
	c.bodyLeft, c.lastChunk = -1, false // not counted: such a connection is closed as before
	c.mu.Unlock()
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite keeps net/http's lingering close of a connection with an unread body.
func (c *handoffConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *handoffConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.hijacked = true
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *handoffConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.moving {
		return nil // the next server owns the deadlines now
	}
	return c.Conn.SetReadDeadline(t)
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
