package protocol

import (
	"bytes"
	"encoding/binary"
)

// RequestWriter builds a REQUEST frame in place: environ pairs, then the body.
// It is reused across requests so the hot path does not allocate.
type RequestWriter struct {
	buf   []byte
	pairs int
}

// Begin starts a new REQUEST frame with the given flags.
func (w *RequestWriter) Begin(flags byte) {
	// header (5) + flags (1) + environ length (4), filled in by Finish.
	w.buf = append(w.buf[:0], 0, 0, 0, 0, byte(TypeRequest), flags, 0, 0, 0, 0)
	w.pairs = 0
}

// Add appends one environ pair. Callers guarantee that neither holds a NUL.
func (w *RequestWriter) Add(key, value string) {
	if w.pairs > 0 {
		w.buf = append(w.buf, 0)
	}
	w.buf = append(w.buf, key...)
	w.buf = append(w.buf, 0)
	w.buf = append(w.buf, value...)
	w.pairs++
}

// AppendValue extends the value of the last pair, for values built from several parts.
func (w *RequestWriter) AppendValue(part string) { w.buf = append(w.buf, part...) }

// Finish closes the environ, appends the inline body (if any) and returns the frame.
// The frame is valid until the next Begin.
func (w *RequestWriter) Finish(body []byte) ([]byte, error) {
	envLen := len(w.buf) - HeaderSize - 5
	w.buf = append(w.buf, body...)
	payload := len(w.buf) - HeaderSize
	if payload > MaxPayload {
		return nil, violation("request frame of %d bytes exceeds the limit", payload)
	}
	binary.BigEndian.PutUint32(w.buf[0:4], uint32(payload))
	binary.BigEndian.PutUint32(w.buf[6:10], uint32(envLen))
	return w.buf, nil
}

// DecodeRequest splits a REQUEST payload. Used by tests and the fuzz target; the
// worker side of the codec lives in Python.
func DecodeRequest(p []byte) (flags byte, environ [][2]string, body []byte, err error) {
	if len(p) < 5 {
		return 0, nil, nil, violation("request payload too short")
	}
	flags = p[0]
	n := binary.BigEndian.Uint32(p[1:5])
	if uint64(n) > uint64(len(p)-5) {
		return 0, nil, nil, violation("environ length %d exceeds payload", n)
	}
	env := p[5 : 5+n]
	if len(env) > 0 {
		parts := bytes.Split(env, []byte{0})
		if len(parts)%2 != 0 {
			return 0, nil, nil, violation("odd number of environ items")
		}
		for i := 0; i < len(parts); i += 2 {
			environ = append(environ, [2]string{string(parts[i]), string(parts[i+1])})
		}
	}
	return flags, environ, p[5+n:], nil
}

// DataRingFrame returns a DATA_RING frame: the answer to a READ is the first n bytes of
// the ring's inbound area.
func DataRingFrame(dst []byte, flags byte, n int) []byte {
	dst = append(AppendHeader(dst, TypeDataRing, 5), flags)
	return binary.BigEndian.AppendUint32(dst, uint32(n))
}

// DataFrame returns a DATA frame answering a READ.
func DataFrame(dst []byte, flags byte, chunk []byte) []byte {
	dst = AppendHeader(dst, TypeData, 1+len(chunk))
	dst = append(dst, flags)
	return append(dst, chunk...)
}

// Headers is a decoded HEADERS payload.
type Headers struct {
	Final  bool
	Status string
	// Fields alternates name and value.
	Fields []string
	Body   []byte
}

// DecodeHeaders parses a HEADERS payload. The strings are copies; Body aliases p.
func DecodeHeaders(p []byte) (Headers, error) {
	if len(p) < 5 {
		return Headers{}, violation("headers payload too short")
	}
	n := binary.BigEndian.Uint32(p[1:5])
	if uint64(n) > uint64(len(p)-5) {
		return Headers{}, violation("header block length %d exceeds payload", n)
	}
	h := Headers{Final: p[0]&HeadersFinal != 0, Body: p[5+n:]}
	var err error
	h.Status, h.Fields, err = DecodeBlock(p[5 : 5+n])
	if err != nil {
		return Headers{}, err
	}
	return h, nil
}

// DecodeBlock splits a header block, `FIRST\0NAME\0VALUE…`: HEADERS (FIRST is the
// status), WS_ACCEPT (the subprotocol) and TRAILERS (FIRST is empty). Fields alternates
// name and value; the strings are copies.
func DecodeBlock(block []byte) (first string, fields []string, err error) {
	i := bytes.IndexByte(block, 0)
	if i < 0 {
		return string(block), nil, nil
	}
	first = string(block[:i])
	rest := string(block[i+1:])
	count := 1
	for j := 0; j < len(rest); j++ {
		if rest[j] == 0 {
			count++
		}
	}
	if count%2 != 0 {
		return "", nil, violation("header block has a name without a value")
	}
	fields = make([]string, 0, count)
	for {
		j := indexNUL(rest)
		if j < 0 {
			fields = append(fields, rest)
			break
		}
		fields = append(fields, rest[:j])
		rest = rest[j+1:]
	}
	return first, fields, nil
}

func indexNUL(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return i
		}
	}
	return -1
}

// File is a decoded FILE payload.
type File struct {
	Offset int64
	Count  int64 // -1: to the end of the file
}

// DecodeFile parses a FILE payload.
func DecodeFile(p []byte) (File, error) {
	if len(p) != 16 {
		return File{}, violation("file payload of %d bytes, want 16", len(p))
	}
	f := File{Offset: int64(binary.BigEndian.Uint64(p[0:8])), Count: int64(binary.BigEndian.Uint64(p[8:16]))}
	if f.Offset < 0 || f.Count < -1 {
		return File{}, violation("file range %d+%d is invalid", f.Offset, f.Count)
	}
	return f, nil
}

// DecodeRead parses a READ payload.
func DecodeRead(p []byte) (int, error) {
	if len(p) != 4 {
		return 0, violation("read payload of %d bytes, want 4", len(p))
	}
	n := binary.BigEndian.Uint32(p)
	if n == 0 {
		return 0, violation("read of zero bytes")
	}
	if n > MaxPayload-1 {
		n = MaxPayload - 1
	}
	return int(n), nil
}

// DecodeLog parses a LOG payload.
func DecodeLog(p []byte) (level byte, text string, err error) {
	if len(p) < 1 || p[0] > 2 {
		return 0, "", violation("bad log payload")
	}
	return p[0], string(p[1:]), nil
}
