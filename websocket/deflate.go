package websocket

import (
	"bytes"
	"compress/flate"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// permessage-deflate (RFC 7692). Context takeover is kept both ways unless an offer asks
// otherwise. Go's compressor has no window-size control, so a client that asks for
// server_max_window_bits below 15 gets Huffman-only compression from us: blocks without
// LZ77 back-references are valid for every window size.

// deflateParams is an accepted permessage-deflate offer.
type deflateParams struct {
	serverNoTakeover bool // we reset our compressor after each message
	clientNoTakeover bool // the client resets its compressor: we keep no history
	serverBits       int  // our LZ77 window, 8..15
	clientBits       int  // the client's window, 8..15 (15 unless the client named one)
	response         string
}

// negotiateDeflate picks the first permessage-deflate offer in the request's
// Sec-WebSocket-Extensions that we can honour (RFC 7692 §7.1). An offer with an unknown
// parameter, a repeated one or a value out of range is declined, as §7.1 requires.
func negotiateDeflate(h http.Header) (deflateParams, bool) {
	for _, v := range h.Values("Sec-WebSocket-Extensions") {
		for _, ext := range splitQuoted(v, ',') {
			parts := splitQuoted(ext, ';')
			if len(parts) == 0 || !strings.EqualFold(strings.TrimSpace(parts[0]), "permessage-deflate") {
				continue
			}
			if p, ok := acceptOffer(parts[1:]); ok {
				return p, true
			}
		}
	}
	return deflateParams{}, false
}

func acceptOffer(params []string) (deflateParams, bool) {
	p := deflateParams{serverBits: 15, clientBits: 15}
	seen := map[string]bool{}
	clientBitsValue := false
	for _, param := range params {
		name, value, hasValue := strings.Cut(strings.TrimSpace(param), "=")
		name = strings.ToLower(strings.TrimSpace(name))
		value = strings.Trim(strings.TrimSpace(value), `"`)
		if seen[name] {
			return p, false
		}
		seen[name] = true
		switch name {
		case "server_no_context_takeover", "client_no_context_takeover":
			if hasValue {
				return p, false
			}
			if name == "server_no_context_takeover" {
				p.serverNoTakeover = true
			} else {
				p.clientNoTakeover = true
			}
		case "server_max_window_bits":
			bits, ok := windowBits(value)
			if !hasValue || !ok {
				return p, false
			}
			p.serverBits = bits
		case "client_max_window_bits":
			if hasValue {
				bits, ok := windowBits(value)
				if !ok {
					return p, false
				}
				p.clientBits, clientBitsValue = bits, true
			}
		default:
			return p, false
		}
	}
	var b strings.Builder
	b.WriteString("permessage-deflate")
	if p.serverNoTakeover {
		b.WriteString("; server_no_context_takeover")
	}
	if p.clientNoTakeover {
		b.WriteString("; client_no_context_takeover")
	}
	if seen["server_max_window_bits"] {
		b.WriteString("; server_max_window_bits=" + strconv.Itoa(p.serverBits))
	}
	if clientBitsValue {
		// §7.1.2.2: echoing the client's value lets us keep a history of that size only.
		b.WriteString("; client_max_window_bits=" + strconv.Itoa(p.clientBits))
	}
	p.response = b.String()
	return p, true
}

// windowBits parses a window-bits value: 1*DIGIT from 8 to 15, no leading zero.
func windowBits(s string) (int, bool) {
	if s == "" || s[0] == '0' || len(s) > 2 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 8 && n <= 15
}

// splitQuoted splits s at sep outside double quotes.
func splitQuoted(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case '\\':
			if quoted {
				i++
			}
		case sep:
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// deflateTail is the end of a sync flush (RFC 7692 §7.2.1 removes it from each message),
// then a final empty stored block so the decompressor ends cleanly.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// minCompress: shorter messages go uncompressed (RSV1 is per message); their deflate
// overhead would outweigh any gain.
const minCompress = 64

// deflater compresses outgoing messages. Its flate.Writer (about 1 MB) is made on the
// first compressed message.
type deflater struct {
	fw         *flate.Writer
	buf        bytes.Buffer
	level      int
	noTakeover bool
	inMessage  bool
}

func newDeflater(p deflateParams) *deflater {
	level := flate.BestSpeed
	if p.serverBits < 15 {
		level = flate.HuffmanOnly // no back-references: honours any window size
	}
	return &deflater{level: level, noTakeover: p.serverNoTakeover}
}

// compress returns the payload of the next frame of a compressed message. The result
// is valid until the next call.
func (d *deflater) compress(data []byte, fin bool) ([]byte, error) {
	if d.fw == nil {
		fw, err := flate.NewWriter(&d.buf, d.level)
		if err != nil {
			return nil, err
		}
		d.fw = fw
	}
	d.buf.Reset()
	if _, err := d.fw.Write(data); err != nil {
		return nil, err
	}
	if err := d.fw.Flush(); err != nil {
		return nil, err
	}
	out := d.buf.Bytes()
	d.inMessage = !fin
	if fin {
		out = bytes.TrimSuffix(out, deflateTail[:4]) // always there after Flush
		if d.noTakeover {
			d.fw.Reset(&d.buf) // the bytes in buf stay: Reset only clears the state
		}
	}
	return out, nil
}

// inflater decompresses incoming messages, keeping the last window of output as the
// dictionary of the next one (context takeover) unless the client resets its context.
type inflater struct {
	fr     io.ReadCloser
	src    bytes.Reader
	tail   bytes.Reader
	dict   []byte
	window int
	keep   bool
	out    bytes.Buffer
}

func newInflater(p deflateParams) *inflater {
	return &inflater{window: 1 << p.clientBits, keep: !p.clientNoTakeover}
}

// inflate decompresses one message; over max bytes of output is errTooBig.
func (f *inflater) inflate(payload []byte, max int) ([]byte, error) {
	f.src.Reset(payload)
	f.tail.Reset(deflateTail)
	r := io.MultiReader(&f.src, &f.tail)
	if f.fr == nil {
		f.fr = flate.NewReaderDict(r, f.dict)
	} else if err := f.fr.(flate.Resetter).Reset(r, f.dict); err != nil {
		return nil, err
	}
	f.out.Reset()
	n, err := f.out.ReadFrom(io.LimitReader(f.fr, int64(max)+1))
	if err != nil {
		return nil, &ProtocolError{CloseInvalidData, "invalid deflate data: " + err.Error()}
	}
	if n > int64(max) {
		return nil, errTooBig
	}
	msg := append([]byte{}, f.out.Bytes()...)
	if f.keep {
		f.remember(msg)
	}
	return msg, nil
}

func (f *inflater) remember(msg []byte) {
	if len(msg) >= f.window {
		f.dict = append(f.dict[:0], msg[len(msg)-f.window:]...)
		return
	}
	if drop := len(f.dict) + len(msg) - f.window; drop > 0 {
		f.dict = f.dict[:copy(f.dict, f.dict[drop:])]
	}
	f.dict = append(f.dict, msg...)
}
