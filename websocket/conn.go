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

// DefaultMaxMessage bounds a reassembled (and decompressed) message, inclusive: 16 MiB,
// Uvicorn's ws_max_size default.
const DefaultMaxMessage = 16 << 20

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
	inflate    *inflater // permessage-deflate was negotiated

	wmu       sync.Mutex
	w         io.Writer
	flush     func() error // HTTP/2 and HTTP/3 streams need a flush per message
	closeSent bool
	head      [14]byte
	deflate   *deflater // permessage-deflate was negotiated
	sending   bool      // a fragmented message is under way (WriteFragment)
	squeezed  bool      // ...and it is compressed
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
	inMessage, compressed := false, false
	var first byte
	checked := 0 // msg[:checked] is valid UTF-8 (uncompressed text fails fast)
	for {
		limit := c.maxMessage - len(msg)
		if compressed {
			limit = c.maxMessage + c.maxMessage>>10 + 64 // deflate's worst-case growth
			limit -= len(msg)
		}
		fin, op, rsv1, payload, err := c.readFrame(limit)
		if err != nil {
			return false, nil, err
		}
		if rsv1 && (c.inflate == nil || op == opContinuation || op >= opClose) {
			return false, nil, &ProtocolError{CloseProtocolError, "RSV1 set outside the first frame of a compressed message"}
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
			inMessage, first, compressed = true, op, rsv1
			msg = payload
		case opContinuation:
			if !inMessage {
				return false, nil, &ProtocolError{CloseProtocolError, "continuation frame without a message"}
			}
			msg = append(msg, payload...)
		default:
			return false, nil, &ProtocolError{CloseProtocolError, fmt.Sprintf("unknown opcode %#x", op)}
		}
		if first == opText && !compressed {
			if checked = validPrefix(msg, checked, fin); checked < 0 {
				return false, nil, &ProtocolError{CloseInvalidData, "text message is not UTF-8"}
			}
		}
		if fin {
			if compressed {
				if msg, err = c.inflate.inflate(msg, c.maxMessage); err != nil {
					return false, nil, err
				}
				if first == opText && !utf8.Valid(msg) {
					return false, nil, &ProtocolError{CloseInvalidData, "text message is not UTF-8"}
				}
			}
			if msg == nil {
				msg = []byte{}
			}
			return first == opBinary, msg, nil
		}
	}
}

// errTooBig is a message over the limit.
var errTooBig = &ProtocolError{CloseTooBig, "message over the size limit"}

// readFrame reads one frame; a data frame's payload may have up to limit bytes.
func (c *Conn) readFrame(limit int) (fin bool, op byte, rsv1 bool, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return false, 0, false, nil, err
	}
	fin, op, rsv1 = h[0]&0x80 != 0, h[0]&0x0F, h[0]&0x40 != 0
	if h[0]&0x30 != 0 {
		return false, 0, false, nil, &ProtocolError{CloseProtocolError, "reserved bits RSV2/RSV3 set (no extension uses them)"}
	}
	masked := h[1]&0x80 != 0
	if masked == c.client {
		return false, 0, false, nil, &ProtocolError{CloseProtocolError, "wrong masking for this direction"}
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return false, 0, false, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return false, 0, false, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if op >= opClose && (n > 125 || !fin) {
		return false, 0, false, nil, &ProtocolError{CloseProtocolError, "control frame fragmented or over 125 bytes"}
	}
	if op < opClose && (limit < 0 || n > uint64(limit)) {
		return false, 0, false, nil, &ProtocolError{CloseTooBig, fmt.Sprintf("message over %d bytes", c.maxMessage)}
	}
	var key [4]byte
	if masked {
		if _, err := io.ReadFull(c.br, key[:]); err != nil {
			return false, 0, false, nil, err
		}
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		return false, 0, false, nil, err
	}
	if masked {
		maskBytes(key, payload)
	}
	return fin, op, rsv1, payload, nil
}

// validPrefix checks b[from:] as UTF-8 and returns how much of b is known valid, or -1.
// Unless fin, b may end inside a character that is valid so far.
func validPrefix(b []byte, from int, fin bool) int {
	for i := from; i < len(b); {
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || size > 1 {
			i += size
			continue
		}
		if fin || !startsRune(b[i:]) {
			return -1
		}
		return i
	}
	return len(b)
}

// startsRune reports whether b (shorter than a full character) can begin a valid one.
func startsRune(b []byte) bool {
	if len(b) >= utf8.UTFMax {
		return false
	}
	lo, hi := byte(0x80), byte(0xBF) // the allowed range of the second byte
	switch c := b[0]; {
	case c >= 0xC2 && c <= 0xDF:
	case c == 0xE0:
		lo = 0xA0
	case c >= 0xE1 && c <= 0xEF:
		if c == 0xED {
			hi = 0x9F
		}
	case c == 0xF0:
		lo = 0x90
	case c >= 0xF1 && c <= 0xF3:
	case c == 0xF4:
		hi = 0x8F
	default:
		return false
	}
	need := 2
	if b[0] >= 0xE0 {
		need = 3
	}
	if b[0] >= 0xF0 {
		need = 4
	}
	if len(b) >= need {
		return false
	}
	for i := 1; i < len(b); i++ {
		if i == 1 && (b[i] < lo || b[i] > hi) || i > 1 && (b[i] < 0x80 || b[i] > 0xBF) {
			return false
		}
	}
	return true
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

// WriteMessage sends one data message as a single frame, compressed when
// permessage-deflate was negotiated and the message is not tiny.
func (c *Conn) WriteMessage(binaryData bool, data []byte) error {
	return c.WriteFragment(binaryData, data, true)
}

// WriteFragment sends part of a data message; fin marks its last part. Control frames
// may go out between the parts; other data messages must not (one writer at a time).
func (c *Conn) WriteFragment(binaryData bool, data []byte, fin bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return ErrClosed
	}
	op := byte(opText)
	if binaryData {
		op = opBinary
	}
	var rsv byte
	if c.sending {
		op = opContinuation
	} else if c.deflate != nil && (!fin || len(data) >= minCompress) {
		c.squeezed, rsv = true, 0x40
	} else {
		c.squeezed = false
	}
	if c.squeezed {
		var err error
		if data, err = c.deflate.compress(data, fin); err != nil {
			return err
		}
	}
	c.sending = !fin
	return c.writeHeadLocked(op|rsv, fin, data)
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
	return c.writeHeadLocked(op, true, payload)
}

// writeHeadLocked writes a frame; op may carry RSV1 (0x40).
func (c *Conn) writeHeadLocked(op byte, fin bool, payload []byte) error {
	h := c.head[:2]
	h[0] = op
	if fin {
		h[0] |= 0x80
	}
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
