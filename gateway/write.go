package gateway

import (
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/caddy-wsgi/caddy-wsgi/protocol"
	"go.uber.org/zap"
)

// startResponse validates the app's status and headers. Nothing is written yet: the
// headers go out with the first body bytes, a FILE, or the end of the response.
func (ex *exchange) startResponse(hd protocol.Headers) {
	code, err := parseStatus(hd.Status)
	header := http.Header{}
	var dropped []string
	if err == nil {
		dropped, err = applyHeaders(header, hd.Fields)
	}
	if err != nil {
		ex.logger().Error("invalid response from application", zap.Error(err))
		ex.fail(http.StatusInternalServerError)
		ex.discard = true
		if !hd.Final {
			ex.cancel() // stop the app producing a body nobody will see
		}
		return
	}
	if len(dropped) > 0 {
		ex.logger().Warn("dropped hop-by-hop response headers set by the application", zap.Strings("headers", dropped))
	}
	ex.code, ex.header, ex.pending = code, header, true
	ex.hasBody = bodyAllowed(ex.r.Method, code)
	ex.remaining = -1
	if cl := header["Content-Length"]; len(cl) == 1 {
		ex.remaining, _ = strconv.ParseInt(cl[0], 10, 64)
	}
}

// commit sends the status line and headers.
func (ex *exchange) commit() {
	if !ex.pending {
		return
	}
	ex.pending = false
	ex.written = true
	dst := ex.w.Header()
	for k, v := range ex.header {
		dst[k] = v
	}
	ex.w.WriteHeader(ex.code)
}

// directWrite: a whole body up to this size is written by the exchange itself (it fits
// the socket buffers); anything else goes through the pump, so the worker is free as soon
// as it has produced the response, however slowly the client reads.
const directWrite = 64 << 10

// writeBody writes one block. flush: more may follow, so the client gets it now
// (server-sent events, PEP 3333's "no buffering"). A block that is the whole body sets
// Content-Length so the connection can be kept alive without chunking.
func (ex *exchange) writeBody(b []byte, flush bool) {
	b = ex.admit(b, flush)
	if b == nil {
		return
	}
	if ex.pump == nil && len(b) <= directWrite && (!flush || ex.remaining == 0) {
		// The whole body, or the block that completes Content-Length (what Flask and
		// Django send, then END): it fits the socket buffers, so no pump is needed. A flush
		// now costs nothing more: it is the write the end of the response would do.
		_, err := ex.w.Write(b)
		if err == nil && flush {
			err = http.NewResponseController(ex.w).Flush()
		}
		if err != nil {
			ex.clientGone(err)
		}
		return
	}
	if err := ex.startPump().push(b); err != nil {
		ex.clientGone(err)
	}
}

// writeRingBlock queues a block the worker put in the response ring (RING_BODY): the
// client gets it from the shared memory, uncopied, and the slot is freed once it is
// written (or copied aside for a slow client, or dropped).
func (ex *exchange) writeRingBlock(p []byte) error {
	b, slot, ring, err := ex.conn.TakeRingBody(p)
	if err != nil {
		return err
	}
	if b = ex.admit(b, true); b == nil {
		ring.Free(slot)
		return nil
	}
	if err := ex.startPump().pushRing(b, ring, slot); err != nil {
		ex.clientGone(err)
	}
	return nil
}

// admit commits the headers for a body block and returns what of it may be sent: nil
// when nothing (the response is discarded, has no body, or Content-Length is reached).
func (ex *exchange) admit(b []byte, flush bool) []byte {
	if ex.discard {
		return nil
	}
	if ex.pending && !flush && ex.remaining < 0 && ex.hasBody {
		ex.header["Content-Length"] = []string{strconv.Itoa(len(b))}
		ex.remaining = int64(len(b))
	}
	ex.commit()
	if len(b) == 0 || !ex.hasBody {
		return nil
	}
	if ex.remaining >= 0 {
		if int64(len(b)) > ex.remaining {
			ex.logger().Warn("application sent more bytes than its Content-Length; truncated")
			b = b[:ex.remaining]
			ex.overran = true
		}
		ex.remaining -= int64(len(b))
	}
	if len(b) == 0 {
		return nil
	}
	return b
}

func (ex *exchange) startPump() *pump {
	if ex.pump == nil {
		ex.pump = newPump(ex.w, &ex.h.slabs)
	}
	return ex.pump
}

// endPump lets the pump write what is queued and waits for it; it runs after the
// worker was released. For an aborted response the blocks already produced still go out
// first, so the client sees the response break where the app failed.
func (ex *exchange) endPump() {
	if ex.pump == nil {
		return
	}
	ex.pump.close()
	if err := ex.pump.wait(); err != nil {
		ex.logger().Debug("client went away during the response", zap.Error(err))
	}
}

// clientGone stops writing and tells the worker to stop producing.
func (ex *exchange) clientGone(err error) {
	ex.logger().Debug("client went away during the response", zap.Error(err))
	ex.discard = true
	ex.cancel()
}

// finish ends a response that produced no body.
func (ex *exchange) finish() {
	if ex.discard {
		return
	}
	ex.commit()
	if ex.remaining > 0 && ex.hasBody {
		ex.logger().Warn("application sent fewer bytes than its Content-Length", zap.Int64("missing", ex.remaining))
		ex.abort = true
	}
}

// sendFile copies a file the worker passed over SCM_RIGHTS (wsgi.file_wrapper). On a
// plain TCP connection Go uses sendfile(2).
func (ex *exchange) sendFile(p []byte) error {
	f, err := ex.conn.TakeFile("wsgi.file_wrapper")
	if err != nil {
		return err
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	fr, err := protocol.DecodeFile(p)
	if err != nil {
		return err
	}
	if ex.discard {
		return nil
	}
	n := fr.Count
	if n < 0 {
		st, err := f.Stat()
		if err != nil {
			ex.logger().Error("file_wrapper: cannot stat file", zap.Error(err))
			ex.fail(http.StatusInternalServerError)
			ex.discard = true
			return nil
		}
		n = max(st.Size()-fr.Offset, 0)
	}
	if ex.remaining >= 0 {
		n = min(n, ex.remaining)
	} else if ex.pending && ex.hasBody {
		// A known length lets Go use sendfile instead of chunked encoding.
		ex.header["Content-Length"] = []string{strconv.FormatInt(n, 10)}
		ex.remaining = n
	}
	ex.commit()
	if !ex.hasBody || n == 0 {
		return nil
	}
	if _, err := f.Seek(fr.Offset, io.SeekStart); err != nil {
		ex.logger().Error("file_wrapper: cannot seek", zap.Error(err))
		ex.abort = true
		ex.discard = true
		return nil
	}
	if ex.remaining >= 0 {
		ex.remaining -= n
	}
	owned := f
	f = nil // the pump closes it once sent
	if err := ex.startPump().pushFile(owned, n); err != nil {
		ex.clientGone(err)
	}
	return nil
}

// maxData bounds one DATA frame, and so the memory a streamed upload takes per request.
const maxData = 256 << 10

// answerRead sends up to n bytes of the streamed request body: read straight into the
// ring's inbound area when the worker made one (a 10-byte DATA_RING then says how many), or
// into one buffer per exchange, reused by every READ, that becomes the DATA frame.
func (ex *exchange) answerRead(n int) error {
	if ex.body == nil || ex.bodyEOF {
		return ex.conn.Write(protocol.DataFrame(nil, protocol.DataEOF, nil))
	}
	if in := ex.conn.Inbound(); in != nil {
		m, flags := ex.readBody(in[:min(n, maxData, len(in))])
		var frame [protocol.HeaderSize + 5]byte
		return ex.conn.Write(protocol.DataRingFrame(frame[:0], flags, m))
	}
	if ex.dataBuf == nil {
		ex.dataBuf = make([]byte, protocol.HeaderSize+1+maxData)
	}
	const head = protocol.HeaderSize + 1 // frame header and flags byte
	m, flags := ex.readBody(ex.dataBuf[head : head+min(n, maxData)])
	frame := append(protocol.AppendHeader(ex.dataBuf[:0], protocol.TypeData, 1+m), flags)
	return ex.conn.Write(frame[:head+m])
}

// readBody reads what the client has sent of the body, at least one byte, into buf ->
// how many, and the DATA flags: EOF at the end, ABORTED (and nothing) if the read failed.
func (ex *exchange) readBody(buf []byte) (int, byte) {
	m, err := io.ReadAtLeast(ex.body, buf, 1)
	switch {
	case err == nil:
		return m, 0
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) && m > 0:
		ex.bodyEOF = true
		return m, protocol.DataEOF
	default:
		ex.logger().Info("request body read failed", zap.Error(err))
		ex.bodyEOF = true
		return 0, protocol.DataAborted
	}
}

// addTrailers records the trailers of an ASGI response (http.response.trailers); they
// go out after the body, once the pump is done.
func (ex *exchange) addTrailers(p []byte) error {
	_, fields, err := protocol.DecodeBlock(p)
	if err != nil {
		return err
	}
	if ex.trailers == nil {
		ex.trailers = http.Header{}
	}
	if _, err := applyHeaders(ex.trailers, fields); err != nil {
		ex.logger().Error("invalid response trailers from application", zap.Error(err))
		ex.trailers = nil
		ex.abort = true
		ex.discard = true
	}
	return nil
}

// sendTrailers hands the trailers to net/http, which sends them after the last chunk
// (HTTP/1.1) or in a trailing HEADERS frame (HTTP/2).
func (ex *exchange) sendTrailers() {
	if len(ex.trailers) == 0 || ex.abort || ex.discard {
		return
	}
	h := ex.w.Header()
	for k, v := range ex.trailers {
		h[http.TrailerPrefix+k] = v
	}
}
