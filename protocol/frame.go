// Package protocol implements the frame codec shared by Caddy and the Python workers.
// PROTOCOL.md at the repository root is the specification; this file follows it.
package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Type identifies a frame.
type Type byte

// Frame types, Caddy → worker.
const (
	TypeRequest Type = 0x01
	TypeData    Type = 0x02
	TypeCancel  Type = 0x03
	// ASGI WebSockets
	TypeWSReceive    Type = 0x04 // a client message: u8 flags, data
	TypeWSDisconnect Type = 0x05 // the client closed: u16 code, UTF-8 reason
	TypeDataRing     Type = 0x06 // DATA whose bytes are in the ring's inbound area: u8 flags, u32 length
)

// Frame types, worker → Caddy.
const (
	TypeHeaders   Type = 0x10
	TypeBody      Type = 0x11
	TypeFile      Type = 0x12
	TypeEnd       Type = 0x13
	TypeRead      Type = 0x14
	TypeError     Type = 0x15
	TypeLog       Type = 0x16
	TypeWSAccept  Type = 0x17 // ASGI: accept the WebSocket (subprotocol, header pairs)
	TypeWSSend    Type = 0x18 // ASGI: a message for the client: u8 flags, data
	TypeWSClose   Type = 0x19 // ASGI: close the WebSocket: u16 code, UTF-8 reason
	TypeTrailers  Type = 0x1A // ASGI: response trailers (header pairs)
	TypeRingBody  Type = 0x1B // a body block in the response ring: u8 slot, u32 length
	TypeRing      Type = 0x1C // the channel's response ring: u32 slots, u32 slot size; its memfd in SCM_RIGHTS
	TypeReady     Type = 0x20
	TypeBootError Type = 0x21
)

// TypeInformational (worker → Caddy) is an informational (1xx) response ahead of the
// final one, e.g. 103 Early Hints: the block `CODE\0NAME\0VALUE…`.
const TypeInformational Type = 0x1F

// Zygote control channel (preload).
const (
	TypeFork    Type = 0x30 // Caddy → zygote: u32 fd count; the first ≤ 250 fds in SCM_RIGHTS
	TypeForkFDs Type = 0x33 // Caddy → zygote: empty; the next ≤ 250 fds of a FORK
	TypeForked  Type = 0x31 // zygote → Caddy: u32 pid
	TypeExited  Type = 0x32 // zygote → Caddy: u32 pid, i32 wait status
)

// Flag bits.
const (
	RequestStream byte = 1 << 0 // REQUEST: body is pulled with READ
	RequestWS     byte = 1 << 1 // REQUEST: a WebSocket handshake (ASGI workers)
	WSBinary      byte = 1 << 0 // WS_RECEIVE, WS_SEND: binary, not text
	WSMore        byte = 1 << 1 // WS_RECEIVE, WS_SEND: the message goes on in the next frame
	DataEOF       byte = 1 << 0 // DATA: no more body after this
	DataAborted   byte = 1 << 1 // DATA: the client's upload failed
	HeadersFinal  byte = 1 << 0 // HEADERS: the body follows in full, no END
)

// HeaderSize is the length of a frame header: u32 payload length and u8 type.
const HeaderSize = 5

// MaxPayload bounds a frame's payload; a larger length means a broken peer.
const MaxPayload = 16 << 20

// ErrProtocol reports a frame that breaks PROTOCOL.md. The peer is then considered broken.
var ErrProtocol = errors.New("wsgi protocol violation")

func violation(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// knownFromWorker reports whether t may be sent by a worker.
func knownFromWorker(t Type) bool {
	switch t {
	case TypeHeaders, TypeBody, TypeFile, TypeEnd, TypeRead, TypeError, TypeLog, TypeReady, TypeBootError,
		TypeForked, TypeExited, TypeWSAccept, TypeWSSend, TypeWSClose, TypeTrailers, TypeInformational,
		TypeRingBody, TypeRing:
		return true
	}
	return false
}

// AppendHeader appends a frame header for a payload of n bytes.
func AppendHeader(dst []byte, t Type, n int) []byte {
	return append(binary.BigEndian.AppendUint32(dst, uint32(n)), byte(t))
}

// AppendFrame appends a whole frame.
func AppendFrame(dst []byte, t Type, payload []byte) []byte {
	return append(AppendHeader(dst, t, len(payload)), payload...)
}

// ParseHeader decodes a frame header and checks the length limit.
func ParseHeader(h []byte) (Type, int, error) {
	n := binary.BigEndian.Uint32(h)
	if n > MaxPayload {
		return 0, 0, violation("payload of %d bytes exceeds the %d limit", n, MaxPayload)
	}
	return Type(h[4]), int(n), nil
}
