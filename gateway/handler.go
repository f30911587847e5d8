// Package gateway turns HTTP requests into exchanges with a Python worker (see
// PROTOCOL.md): WSGI (with the server-side rules of PEP 3333), ASGI HTTP with
// trailers, and WebSockets. It has no Caddy imports.
package gateway

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddy-wsgi/caddy-wsgi/protocol"
	"github.com/caddy-wsgi/caddy-wsgi/websocket"
	"github.com/caddy-wsgi/caddy-wsgi/workerpool"
	"go.uber.org/zap"
)

// DefaultBufferBody is how much of a request body Go reads before choosing a worker.
const DefaultBufferBody = 1 << 20

// Handler serves HTTP requests with a worker pool.
type Handler struct {
	pool       *workerpool.Pool
	timeout    time.Duration // per-request deadline; <= 0: none
	bufferBody int64
	scriptName string
	log        *zap.Logger
	keys       headerKeys
	app        workerpool.AppInterface  // environ or scope: WSGI, or ASGI with WebSockets and trailers
	onTimeout  workerpool.TimeoutPolicy // kill the worker or cancel the request
	asgiKeys   map[string]string        // header name → `~name`, for ASGI
	writers    sync.Pool                // *protocol.RequestWriter
	slabs      sync.Pool                // *[]byte of pumpSlab bytes, for streamed responses
	observer   Observer
	ws         websocket.Options
}

// Options configures a Handler.
type Options struct {
	// BufferBody: request bodies up to this size are read completely before a worker is
	// chosen (a slow upload never holds a worker) and reach the app with CONTENT_LENGTH
	// even when they came chunked. Larger bodies stream to wsgi.input. Default 1 MiB.
	BufferBody int64
	// ScriptName is the SCRIPT_NAME when Request.ScriptName is empty.
	ScriptName string
	Logger     *zap.Logger
	// Observer, if set, is told about every request (metrics).
	Observer Observer
	// WebSocket: the message limit and compression of WebSockets (ASGI).
	WebSocket websocket.Options
}

// Observer receives per-request measurements.
type Observer interface {
	// ObserveRequest: queueWait is the time spent waiting for a worker, duration the time
	// from dispatch to the end of the response (0 when no worker took it), code the
	// status sent.
	ObserveRequest(queueWait, duration time.Duration, code int)
}

// New returns a Handler over pool.
func New(pool *workerpool.Pool, opts Options) *Handler {
	if opts.BufferBody <= 0 {
		opts.BufferBody = DefaultBufferBody
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	h := &Handler{
		timeout:    pool.Config().Timeout,
		pool:       pool,
		bufferBody: opts.BufferBody,
		scriptName: opts.ScriptName,
		log:        opts.Logger,
		keys:       newHeaderKeys(),
		observer:   opts.Observer,
		app:        pool.Config().WorkerClass.App(),
		onTimeout:  pool.Config().WorkerClass.Timeout(),
		ws:         opts.WebSocket,
	}
	if h.app == workerpool.ASGIScope {
		h.asgiKeys = asgiHeaderKeys(h.keys)
	}
	h.writers.New = func() any { return new(protocol.RequestWriter) }
	h.slabs.New = func() any { b := make([]byte, 0, pumpSlab); return &b }
	return h
}

// ServeHTTP runs one request through a worker. It returns after the response is written.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, info Request) {
	h.pool.Enter()
	defer h.pool.Leave()
	if strings.IndexByte(r.URL.Path, 0) >= 0 || strings.IndexByte(info.ScriptName, 0) >= 0 {
		http.Error(w, "Bad Request: NUL in path", http.StatusBadRequest)
		return
	}
	if reason := checkRequest(r); reason != "" {
		h.refuse(w, r, reason)
		return
	}
	stripFragment(r)
	if h.app == workerpool.ASGIScope && websocket.IsUpgrade(r) {
		h.serveWebSocket(w, r, info)
		return
	}
	in, err := h.readBody(r)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "Request Entity Too Large", http.StatusRequestEntityTooLarge)
			return
		}
		// Also when the client half-closed (its context is then done): it may still read.
		h.refuse(w, r, "incomplete body: "+err.Error())
		return
	}
	if r.Trailer != nil {
		if name := checkTrailers(r); name != "" {
			h.refuse(w, r, "forbidden trailer field "+name)
			return
		}
	}

	fw := h.writers.Get().(*protocol.RequestWriter)
	defer h.writers.Put(fw)
	var flags byte
	if in.stream != nil {
		flags = protocol.RequestStream
	}
	fw.Begin(flags)
	if err := h.writeEnviron(fw, r, info, in.length, in.stream != nil); err != nil {
		http.Error(w, "Bad Request: "+err.Error(), http.StatusBadRequest)
		return
	}
	frame, err := fw.Finish(in.buffered)
	if err != nil {
		http.Error(w, "Request Entity Too Large", http.StatusRequestEntityTooLarge)
		return
	}

	ex := &exchange{h: h, w: w, r: r, body: in.stream, timeout: h.timeout}
	h.serve(ex, frame, in.stream == nil)
}

func (h *Handler) observe(queueWait, duration time.Duration, code int) {
	if h.observer != nil {
		h.observer.ObserveRequest(queueWait, duration, code)
	}
}

// dispatch leases a worker thread and writes the REQUEST. A lease queued behind a
// running exchange gets its REQUEST written at once (so the worker finds it without a
// wake-up) and then waits its turn.
func (h *Handler) dispatch(r *http.Request, frame []byte, pipelinable bool) (lease *workerpool.Lease, sendErr, err error) {
	for {
		lease, err = h.pool.Acquire(r.Context(), pipelinable)
		if err != nil {
			return nil, nil, err
		}
		sendErr = lease.Slot.Send(lease.Order, frame)
		if lease.Wait() {
			continue // the exchange ahead broke the worker; this request never reached it
		}
		return lease, sendErr, nil
	}
}

// unavailable answers a request no worker could take.
func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client left while queued
	}
	retry := "1"
	if errors.Is(err, workerpool.ErrUnavailable) || errors.Is(err, workerpool.ErrClosed) {
		retry = "5"
	}
	h.log.Warn("no worker available", zap.String("method", r.Method), zap.String("uri", r.RequestURI), zap.Error(err))
	w.Header().Set("Retry-After", retry)
	http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
}

// requestBody is what Go read of a request body before dispatch.
type requestBody struct {
	buffered []byte    // the whole body, when it fit in BufferBody
	stream   io.Reader // the body to stream with READ, when it did not
	length   int64     // CONTENT_LENGTH, or -1
}

func (h *Handler) readBody(r *http.Request) (requestBody, error) {
	if r.Body == nil || r.Body == http.NoBody || (r.ContentLength == 0 && len(r.TransferEncoding) == 0) {
		if r.ContentLength == 0 && len(r.Header["Content-Length"]) > 0 {
			return requestBody{length: 0}, nil
		}
		return requestBody{length: -1}, nil
	}
	if r.ContentLength > h.bufferBody {
		return requestBody{stream: r.Body, length: r.ContentLength}, nil
	}
	limit := h.bufferBody + 1
	if r.ContentLength >= 0 {
		limit = r.ContentLength + 1
	}
	buf := make([]byte, 0, min(limit, 64<<10))
	for int64(len(buf)) < limit {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Body.Read(buf[len(buf):min(int64(cap(buf)), limit)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return requestBody{buffered: buf, length: int64(len(buf))}, nil
		}
		if err != nil {
			return requestBody{}, err
		}
	}
	if r.ContentLength >= 0 {
		return requestBody{buffered: buf[:r.ContentLength], length: r.ContentLength}, nil
	}
	// Chunked and larger than BufferBody: stream what was read, then the rest.
	return requestBody{stream: io.MultiReader(bytes.NewReader(buf), r.Body), length: -1}, nil
}
