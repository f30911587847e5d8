// Package websocket is the RFC 6455 side of Caddy's WebSockets for ASGI apps: the
// handshake over HTTP/1.1 (Upgrade) and over HTTP/2 or HTTP/3 (extended CONNECT, RFC 8441
// and RFC 9220), message reassembly, ping/pong and the close handshake. The messages go
// to a worker over the channel protocol; this package knows nothing of workers or Caddy.
package websocket

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// IsUpgrade reports whether r asks for a WebSocket.
func IsUpgrade(r *http.Request) bool {
	if r.Method == http.MethodConnect {
		// RFC 8441 (HTTP/2): the :protocol pseudo-header; quic-go (HTTP/3) puts it in Proto.
		return r.Header.Get(":protocol") == "websocket" || (r.ProtoMajor == 3 && r.Proto == "websocket")
	}
	return r.Method == http.MethodGet && r.ProtoMajor == 1 &&
		hasToken(r.Header, "Connection", "upgrade") && hasToken(r.Header, "Upgrade", "websocket")
}

func extendedConnect(r *http.Request) bool { return r.Method == http.MethodConnect }

func hasToken(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// HandshakeError is a handshake request that cannot be accepted; Status is the answer.
type HandshakeError struct {
	Status int
	Reason string
}

func (e *HandshakeError) Error() string { return "websocket handshake: " + e.Reason }

// CheckRequest validates a handshake request before any worker is involved.
func CheckRequest(r *http.Request) error {
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return &HandshakeError{http.StatusUpgradeRequired, "Sec-WebSocket-Version must be 13"}
	}
	if extendedConnect(r) {
		return nil // RFC 8441 §5: no key, no accept
	}
	key, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-WebSocket-Key"))
	if err != nil || len(key) != 16 {
		return &HandshakeError{http.StatusBadRequest, "Sec-WebSocket-Key must be 16 bytes in base64"}
	}
	return nil
}

// AcceptKey is the Sec-WebSocket-Accept value for a Sec-WebSocket-Key (RFC 6455 §4.2.2).
func AcceptKey(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// Options of an accepted WebSocket.
type Options struct {
	// MaxMessage bounds a message from the client (after decompression), inclusive;
	// larger ones close the connection with 1009. 0: DefaultMaxMessage.
	MaxMessage int
	// NoCompression declines permessage-deflate (RFC 7692), which is otherwise accepted
	// when the client offers it.
	NoCompression bool
}

// Accept answers a handshake CheckRequest passed and returns the open connection. The
// extra header must already be validated (no CR, LF or NUL).
func Accept(w http.ResponseWriter, r *http.Request, subprotocol string, extra http.Header, opts Options) (*Conn, error) {
	rc := http.NewResponseController(w)
	var deflate deflateParams
	compress := false
	if !opts.NoCompression {
		deflate, compress = negotiateDeflate(r.Header)
	}
	wrap := func(c *Conn) *Conn {
		if compress {
			c.deflate, c.inflate = newDeflater(deflate), newInflater(deflate)
		}
		return c
	}
	if extendedConnect(r) {
		h := w.Header()
		for k, v := range extra {
			h[k] = v
		}
		if subprotocol != "" {
			h.Set("Sec-WebSocket-Protocol", subprotocol)
		}
		if compress {
			h.Set("Sec-WebSocket-Extensions", deflate.response)
		}
		w.WriteHeader(http.StatusOK)
		if err := rc.Flush(); err != nil {
			return nil, fmt.Errorf("websocket accept: %w", err)
		}
		// The stream lives as long as the WebSocket: no server read/write timeouts.
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
		flush := func() error { return rc.Flush() }
		return wrap(newConn(bufio.NewReader(r.Body), w, flush, r.Body, false, opts.MaxMessage)), nil
	}
	netConn, brw, err := rc.Hijack()
	if err != nil {
		return nil, fmt.Errorf("websocket accept: hijacking the connection: %w", err)
	}
	_ = netConn.SetDeadline(time.Time{})
	var b strings.Builder
	b.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ")
	b.WriteString(AcceptKey(r.Header.Get("Sec-WebSocket-Key")))
	b.WriteString("\r\n")
	if subprotocol != "" {
		b.WriteString("Sec-WebSocket-Protocol: " + subprotocol + "\r\n")
	}
	if compress {
		b.WriteString("Sec-WebSocket-Extensions: " + deflate.response + "\r\n")
	}
	for k, vs := range extra {
		for _, v := range vs {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	_, err = brw.Writer.WriteString(b.String())
	if err == nil {
		err = brw.Writer.Flush()
	}
	if err != nil {
		netConn.Close()
		return nil, fmt.Errorf("websocket accept: writing the handshake: %w", err)
	}
	return wrap(newConn(brw.Reader, netConn, nil, netConn, false, opts.MaxMessage)), nil
}

// ErrClosed is returned by writes after the close frame was sent.
var ErrClosed = errors.New("websocket: close frame already sent")
