package protocol

import (
	"encoding/binary"
	"unicode/utf8"
)

// WSMessageFrame appends a WS_RECEIVE frame: one client message for the app. A message
// over one frame goes in several with WSMore, text cut between characters.
func WSMessageFrame(dst []byte, binaryData bool, data []byte) []byte {
	var flags byte
	if binaryData {
		flags = WSBinary
	}
	for len(data) >= MaxPayload {
		cut := MaxPayload - 1
		for !binaryData && cut > 0 && !utf8.RuneStart(data[cut]) {
			cut--
		}
		dst = AppendHeader(dst, TypeWSReceive, 1+cut)
		dst = append(dst, flags|WSMore)
		dst = append(dst, data[:cut]...)
		data = data[cut:]
	}
	dst = AppendHeader(dst, TypeWSReceive, 1+len(data))
	dst = append(dst, flags)
	return append(dst, data...)
}

// DecodeWSMessage parses a WS_SEND payload: a message, or a part of one when more is
// set. data aliases p.
func DecodeWSMessage(p []byte) (binaryData, more bool, data []byte, err error) {
	if len(p) < 1 {
		return false, false, nil, violation("empty WebSocket message payload")
	}
	if p[0]&^(WSBinary|WSMore) != 0 {
		return false, false, nil, violation("WebSocket message has unknown flags 0x%02x", p[0])
	}
	data = p[1:]
	binaryData, more = p[0]&WSBinary != 0, p[0]&WSMore != 0
	if !binaryData && !utf8.Valid(data) {
		return false, false, nil, violation("WebSocket text message is not UTF-8")
	}
	return binaryData, more, data, nil
}

// WSCloseFrame returns a WS_DISCONNECT (t) frame with a close code and reason.
func WSCloseFrame(t Type, code int, reason string) []byte {
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	return AppendFrame(nil, t, append(p, reason...))
}

// DecodeWSClose parses a WS_CLOSE payload.
func DecodeWSClose(p []byte) (code int, reason string, err error) {
	if len(p) < 2 {
		return 0, "", violation("WebSocket close payload shorter than 2 bytes")
	}
	if !utf8.Valid(p[2:]) {
		return 0, "", violation("WebSocket close reason is not UTF-8")
	}
	return int(binary.BigEndian.Uint16(p)), string(p[2:]), nil
}
