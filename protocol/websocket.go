package protocol

import (
	"encoding/binary"
	"unicode/utf8"
)

// WSMessageFrame appends a WS_RECEIVE frame: one client message for the app.
func WSMessageFrame(dst []byte, binaryData bool, data []byte) []byte {
	var flags byte
	if binaryData {
		flags = WSBinary
	}
	dst = AppendHeader(dst, TypeWSReceive, 1+len(data))
	dst = append(dst, flags)
	return append(dst, data...)
}

// DecodeWSMessage parses a WS_SEND payload. data aliases p.
func DecodeWSMessage(p []byte) (binaryData bool, data []byte, err error) {
	if len(p) < 1 {
		return false, nil, violation("empty WebSocket message payload")
	}
	if p[0]&^WSBinary != 0 {
		return false, nil, violation("WebSocket message has unknown flags 0x%02x", p[0])
	}
	data = p[1:]
	binaryData = p[0]&WSBinary != 0
	if !binaryData && !utf8.Valid(data) {
		return false, nil, violation("WebSocket text message is not UTF-8")
	}
	return binaryData, data, nil
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
