package caddymodule

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	plainHTTP1 int8 = 1
	otherProto int8 = -1
)

var longAgo = time.Unix(1, 0)

// maxReplay bounds what a connection keeps of the bytes read since its last response: a
// request head is far smaller; past it (a body being read) the connection is never moved.
const maxReplay = 64 << 10

// justRead is how recently a whole request head must have arrived for its connection to
// move. net/http marks a connection active only once it has parsed the head, and then
// drops a request it read during a shutdown without answering it: a head that has just
// arrived on a connection Shutdown takes for idle is replayed to the next server. An older
// head is a request that is running (a close then is Caddy ending its grace period, and
// goes ahead).
const justRead = time.Second

// errMoved is what the old server's read gets once its connection has moved: a read error,
// so that net/http closes it without answering (the next server answers).
var errMoved = &net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}

// handoffConn is a server connection that can move to the next config's server.
//
// A connection moves only at a request boundary: the last response was complete and told
// the client to keep the connection, and every byte read since then is in after, to be
// replayed to the next server (the old one never answers a request it reads during its
// shutdown, so the request runs once).
type handoffConn struct {
	net.Conn
	l *handoffListener

	mu       sync.Mutex
	prefix   []byte // replayed before reading the socket
	reading  bool   // a Read is waiting on the socket
	kind     int8   // plainHTTP1, otherProto, or 0 before the first bytes
	hijacked bool   // SetDeadline: net/http hijacked it (WebSocket, h2c upgrade)
	moving   bool   // handed over: the pending read returns and passes the conn on
	moved    atomic.Bool

	// The last response as written, to tell when it is complete.
	keepAlive bool  // its head had no Connection: close (true before any response)
	chunked   bool  // its body is chunked ...
	lastChunk bool  // ... and the last write ended with the last chunk
	bodyLeft  int64 // Content-Length bytes not yet written; -1: unknown

	after     []byte    // every byte read since the last write, up to maxReplay
	overflow  bool      // more than maxReplay bytes were read since the last write
	headAt    time.Time // when after first held a whole request head
	afterHead bool      // after holds a whole request head
}

func newHandoffConn(c net.Conn, l *handoffListener, prefix []byte) *handoffConn {
	return &handoffConn{Conn: c, l: l, prefix: prefix, keepAlive: true}
}

func (c *handoffConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.moving {
		c.mu.Unlock()
		return 0, errMoved
	}
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		c.record(p[:n]) // the server holds these now, as if read from the socket
		c.mu.Unlock()
		return n, nil
	}
	c.reading = true
	c.mu.Unlock()
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.reading = false
	if n > 0 {
		c.record(p[:n])
	}
	if c.moving {
		// Close handed the connection over while this read waited: what it got (in after
		// with what came before it) belongs to the next server.
		c.mu.Unlock()
		c.pass()
		return 0, errMoved
	}
	c.mu.Unlock()
	return n, err
}

// record keeps the bytes read since the last response (c.mu held).
func (c *handoffConn) record(b []byte) {
	if c.kind == 0 {
		c.sawFirstBytes(b)
	}
	if c.kind == otherProto {
		return // never moved (movable): nothing to replay
	}
	if c.overflow || len(c.after)+len(b) > maxReplay {
		c.overflow, c.after = true, nil // a body is being read: keep no 64 KiB per idle connection
		return
	}
	c.after = append(c.after, b...)
	if !c.afterHead && bytes.Contains(c.after, headEnd) {
		c.afterHead, c.headAt = true, time.Now()
	}
}

func (c *handoffConn) sawFirstBytes(b []byte) {
	c.kind = otherProto
	if b0 := b[0]; 'A' <= b0 && b0 <= 'Z' && !bytes.HasPrefix(b, []byte("PRI ")) {
		c.kind = plainHTTP1
	}
}

// pass gives the connection, with the bytes to replay, to the next server.
func (c *handoffConn) pass() {
	c.mu.Lock()
	replay := append([]byte(nil), c.after...)
	c.mu.Unlock()
	c.Conn.SetReadDeadline(time.Time{})
	c.moved.Store(true)
	c.l.hub.give(&movedConn{Conn: c.Conn, prefix: replay})
}

// Close is called by net/http's Shutdown on a connection it takes for idle (from another
// goroutine, while the connection's own goroutine waits in Read for the next request, or
// has just read it), and by the connection's own goroutine when it ends.
func (c *handoffConn) Close() error {
	c.mu.Lock()
	switch {
	case c.moving:
		c.mu.Unlock()
		return nil
	case !c.movable():
		c.mu.Unlock()
		return c.Conn.Close()
	case c.afterHead && time.Since(c.headAt) >= justRead:
		c.mu.Unlock()
		return c.Conn.Close()
	case c.reading:
		// Wake the Read, which passes the conn on. Under c.mu, so that this deadline is
		// set before the Read can clear it.
		c.moving = true
		err := c.Conn.SetReadDeadline(longAgo)
		c.mu.Unlock()
		return err
	default:
		c.moving = true
		c.mu.Unlock()
		c.pass()
		return nil
	}
}

// movable reports that the connection is at a request boundary of plain HTTP/1.1 during
// its server's shutdown (c.mu held).
func (c *handoffConn) movable() bool {
	if c.kind == otherProto || c.hijacked || c.overflow || !c.l.shuttingDown() || !c.keepAlive {
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
// a write), enough to tell when the last one is complete (c.mu held).
func (c *handoffConn) track(p []byte) {
	c.after, c.overflow, c.afterHead = c.after[:0], false, false
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
