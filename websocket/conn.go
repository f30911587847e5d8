package websocket

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"unicode/utf8"
)

// Close codes (RFC 6455 §7.4.1).
const (
	CloseNormal         = 1000
	CloseGoingAway      = 1001
	CloseProtocolError  = 1002
	CloseNoStatus       = 1005 // never sent: a close frame without a code
	CloseAbnormal       = 1006 // never sent: the connection dropped without a close frame
	CloseInvalidData    = 1007
	CloseTooBig         = 1009
	CloseInternalError  = 1011
	CloseServiceRestart = 1012
)

// DefaultMaxMessage bounds a reassembled message: it must fit one channel frame.
const DefaultMaxMessage = 16<<20 - 64

const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// CloseError is the peer's close frame.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("websocket closed by peer: %d %q", e.Code, e.Reason)
}

// ProtocolError is a peer that broke RFC 6455; Code is the close code to answer with.
type ProtocolError struct {
	Code   int
	Reason string
}

func (e *ProtocolError) Error() string { return "websocket protocol error: " + e.Reason }

// Conn is one WebSocket. ReadMessage is for one goroutine; writes may come from any.
type Conn struct {
	br         *bufio.Reader
	client     bool // client side: masks its frames, expects unmasked ones
	maxMessage int
	closer     io.Closer

	wmu       sync.Mutex
	w         io.Writer
	flush     func() error // HTTP/2 and HTTP/3 streams need a flush per message
	closeSent bool
	head      [14]byte
}

func newConn(r *bufio.Reader, w io.Writer, flush func() error, closer io.Closer, client bool, maxMessage int) *Conn {
	if maxMessage <= 0 {
		maxMessage = DefaultMaxMessage
	}
	return &Conn{br: r, w: w, flush: flush, closer: closer, client: client, maxMessage: maxMessage}
}

// NewClient wraps the client end of an established WebSocket stream (tests and tools:
// for example an RFC 8441 stream opened with Go's HTTP/2 client). flush may be nil.
func NewClient(r io.Reader, w io.Writer, flush func() error, closer io.Closer) *Conn {
	return newConn(bufio.NewReader(r), w, flush, closer, true, DefaultMaxMessage)
}

// ReadMessage returns the next data message. It answers pings itself and returns a
// *CloseError when the peer closes, a *ProtocolError when it breaks the protocol (the
// caller closes with its Code), or an I/O error.
func (c *Conn) ReadMessage() (binaryData bool, data []byte, err error) {
	var msg []byte
	inMessage := false
	var first byte
	for {
		fin, op, payload, err := c.readFrame(len(msg))
		if err != nil {
			return false, nil, err
		}
		switch op {
		case opPing:
			if err := c.writeFrame(opPong, payload); err != nil && err != ErrClosed {
				return false, nil, err
			}
			continue
		case opPong:
			continue
		case opClose:
			return false, nil, parseClose(payload)
		case opText, opBinary:
			if inMessage {
				return false, nil, &ProtocolError{CloseProtocolError, "new message inside a fragmented one"}
			}
			inMessage, first = true, op
			msg = payload
		case opContinuation:
			if !inMessage {
				return false, nil, &ProtocolError{CloseProtocolError, "continuation frame without a message"}
			}
			msg = append(msg, payload...)
		default:
			return false, nil, &ProtocolError{CloseProtocolError, fmt.Sprintf("unknown opcode %#x", op)}
		}
		if fin {
			if first == opText && !utf8.Valid(msg) {
				return false, nil, &ProtocolError{CloseInvalidData, "text message is not UTF-8"}
			}
			if msg == nil {
				msg = []byte{}
			}
			return first == opBinary, msg, nil
		}
	}
}

// readFrame reads one frame; have is the size of the message assembled so far.
func (c *Conn) readFrame(have int) (fin bool, op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return false, 0, nil, err
	}
	fin, op = h[0]&0x80 != 0, h[0]&0x0F
	if h[0]&0x70 != 0 {
		return false, 0, nil, &ProtocolError{CloseProtocolError, "reserved bits set (no extension was negotiated)"}
	}
	masked := h[1]&0x80 != 0
	if masked == c.client {
		return false, 0, nil, &ProtocolError{CloseProtocolError, "wrong masking for this direction"}
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return false, 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return false, 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if op >= opClose && (n > 125 || !fin) {
		return false, 0, nil, &ProtocolError{CloseProtocolError, "control frame fragmented or over 125 bytes"}
	}
	if op < opClose && n > uint64(c.maxMessage-have) {
		return false, 0, nil, &ProtocolError{CloseTooBig, fmt.Sprintf("message over %d bytes", c.maxMessage)}
	}
	var key [4]byte
	if masked {
		if _, err := io.ReadFull(c.br, key[:]); err != nil {
			return false, 0, nil, err
		}
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		return false, 0, nil, err
	}
	if masked {
		maskBytes(key, payload)
	}
	return fin, op, payload, nil
}

func maskBytes(key [4]byte, b []byte) {
	for i := range b {
		b[i] ^= key[i&3]
	}
}

func parseClose(p []byte) error {
	switch {
	case len(p) == 0:
		return &CloseError{Code: CloseNoStatus}
	case len(p) == 1:
		return &ProtocolError{CloseProtocolError, "close frame of 1 byte"}
	}
	code := int(binary.BigEndian.Uint16(p))
	if !ValidCloseCode(code) {
		return &ProtocolError{CloseProtocolError, fmt.Sprintf("invalid close code %d", code)}
	}
	if !utf8.Valid(p[2:]) {
		return &ProtocolError{CloseInvalidData, "close reason is not UTF-8"}
	}
	return &CloseError{Code: code, Reason: string(p[2:])}
}

// ValidCloseCode reports whether code may appear in a close frame (RFC 6455 §7.4).
func ValidCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// WriteMessage sends one data message as a single frame.
func (c *Conn) WriteMessage(binaryData bool, data []byte) error {
	op := byte(opText)
	if binaryData {
		op = opBinary
	}
	return c.writeFrame(op, data)
}

// WriteClose sends the close frame (once; later calls do nothing). An invalid code
// (1005, 1006, out of range) is sent as 1011.
func (c *Conn) WriteClose(code int, reason string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return nil
	}
	if !ValidCloseCode(code) {
		code = CloseInternalError
	}
	if len(reason) > 123 {
		reason = reason[:123]
		for !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	p := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), uint16(code))
	err := c.writeLocked(opClose, append(p, reason...))
	c.closeSent = true
	return err
}

// CloseSent reports whether the close frame went out.
func (c *Conn) CloseSent() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.closeSent
}

// Close closes the underlying connection or stream.
func (c *Conn) Close() error { return c.closer.Close() }

func (c *Conn) writeFrame(op byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return ErrClosed
	}
	return c.writeLocked(op, payload)
}

func (c *Conn) writeLocked(op byte, payload []byte) error {
	h := c.head[:2]
	h[0] = 0x80 | op
	n := len(payload)
	switch {
	case n < 126:
		h[1] = byte(n)
	case n <= 0xFFFF:
		h[1] = 126
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	default:
		h[1] = 127
		h = binary.BigEndian.AppendUint64(h, uint64(n))
	}
	if c.client {
		var key [4]byte
		if _, err := rand.Read(key[:]); err != nil {
			return err
		}
		h[1] |= 0x80
		h = append(h, key[:]...)
		masked := append([]byte(nil), payload...)
		maskBytes(key, masked)
		payload = masked
	}
	var err error
	if n <= 4096 {
		_, err = c.w.Write(append(h, payload...))
	} else if _, err = c.w.Write(h); err == nil {
		_, err = c.w.Write(payload)
	}
	if err == nil && c.flush != nil {
		err = c.flush()
	}
	return err
}
