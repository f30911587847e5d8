package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/caddy-wsgi/caddy-wsgi/protocol"
	"github.com/caddy-wsgi/caddy-wsgi/workerpool"
	"go.uber.org/zap"
)

// exchange is one request/response over a worker channel, driven by the frames the
// worker sends (PROTOCOL.md).
type exchange struct {
	h     *Handler
	w     http.ResponseWriter
	r     *http.Request
	slot  *workerpool.Slot
	conn  *protocol.Conn
	order uint64    // our REQUEST's place on the channel (for CANCEL)
	body  io.Reader // streamed request body, or nil
	log   *zap.Logger

	timeout  time.Duration
	start    time.Time
	timedOut bool // past the deadline: the worker must be killed
	expired  bool // ASGI: past the deadline, cancelled, waiting for the worker to end it

	code       int
	hasBody    bool        // the response may carry a body
	header     http.Header // the app's headers, copied to w at commit
	pending    bool        // headers accepted but WriteHeader not called yet
	started    bool        // HEADERS received
	written    bool        // WriteHeader called
	remaining  int64       // bytes the app's Content-Length still allows, or -1
	overran    bool        // the app sent more than its Content-Length
	discard    bool        // stop writing: client gone or response already failed
	abort      bool        // the handler must abort the HTTP response
	bodyEOF    bool
	dataBuf    []byte // DATA frames of a streamed body are built here
	pump       *pump  // writes a streamed or large response to the client
	trailers   http.Header
	cancelOnce sync.Once

	informationals int // 1xx responses sent (or dropped past maxInformational)

	// The client's context is watched (for CANCEL) only once an exchange outlasts
	// watchAfter or streams: registering costs allocations most requests never need.
	stopWatch func() bool
	watchDone chan struct{}
	noWatch   bool // a WebSocket: its reader notices the client leaving
}

// watchAfter is how long an exchange runs before the client's context is watched.
const watchAfter = 10 * time.Millisecond

// asgiCancelGrace is how long an ASGI worker has to end a request cancelled for its
// timeout before its event loop is taken for blocked and the worker is killed.
const asgiCancelGrace = 5 * time.Second

// run drives the exchange until the worker ends it. It reports whether the channel is
// still in a known state (false: the worker must be replaced).
func (ex *exchange) run() bool {
	ex.start = time.Now()
	if ex.timeout > 0 && ex.timeout <= watchAfter {
		ex.watchClient()
		ex.resetDeadline(ex.start)
	} else {
		ex.conn.Raw().SetReadDeadline(ex.start.Add(watchAfter))
	}
	defer ex.unwatchClient()
	for {
		t, p, end, healthy := ex.readFrame()
		if end {
			return healthy
		}
		done, err := ex.handle(t, p)
		if over, healthy := ex.settle(done, err); over {
			return healthy
		}
		if ex.stopWatch == nil {
			if ex.started && ex.remaining == 0 && !ex.overran {
				// The body is whole (Content-Length reached: Flask's and Django's one block);
				// only END is to come, so there is nothing to cancel. An app that goes on past
				// its length is watched as any stream.
				continue
			}
			ex.watchClient() // a streamed response or body: it may last
			ex.resetDeadline(time.Now())
		} else if t == protocol.TypeBody || t == protocol.TypeRingBody || t == protocol.TypeFile || t == protocol.TypeRead {
			// Progress: a stream that keeps producing (server-sent events) or an upload
			// being read is not stuck. The deadline runs again from here.
			ex.resetDeadline(time.Now())
		}
	}
}

// settle ends the exchange after a frame was handled, when the frame completed it or broke
// the protocol; over reports that it did, healthy how the channel was left.
func (ex *exchange) settle(done bool, err error) (over, healthy bool) {
	if err != nil {
		return true, ex.brokeProtocol(err)
	}
	if done {
		ex.finish()
		return true, true
	}
	return false, false
}

// brokeProtocol handles a frame that breaks PROTOCOL.md: 502 (or an aborted response),
// and false, so the worker is replaced.
func (ex *exchange) brokeProtocol(err error) bool {
	ex.logger().Error("worker broke the protocol", zap.Error(err))
	ex.fail(http.StatusBadGateway)
	return false
}

// watchClient sends CANCEL when the client's context ends (it left, or HTTP/2 reset the
// stream), from now until unwatchClient.
func (ex *exchange) watchClient() {
	if ex.stopWatch != nil || ex.noWatch {
		return
	}
	done := make(chan struct{})
	ex.watchDone = done
	ex.stopWatch = context.AfterFunc(ex.r.Context(), func() {
		defer close(done)
		ex.cancel()
	})
}

// unwatchClient stops watching; a CANCEL already started is on the wire when it returns,
// before the channel can be reused.
func (ex *exchange) unwatchClient() {
	if ex.stopWatch != nil && !ex.stopWatch() {
		<-ex.watchDone
	}
}

// resetDeadline gives the worker `timeout` from `from` (no deadline without a timeout).
func (ex *exchange) resetDeadline(from time.Time) {
	if ex.timeout > 0 {
		ex.conn.Raw().SetReadDeadline(from.Add(ex.timeout))
	} else {
		ex.conn.Raw().SetReadDeadline(time.Time{})
	}
}

// readFrame returns the worker's next frame. end reports that the exchange is over
// without one (past its deadline, the worker lost, or an expired ASGI exchange drained);
// healthy is then what run returns.
func (ex *exchange) readFrame() (t protocol.Type, p []byte, end, healthy bool) {
	for {
		t, p, err := ex.conn.ReadFrame()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if ex.stopWatch == nil && !ex.noWatch {
				// Past watchAfter: from now on a client that leaves cancels the exchange.
				ex.watchClient()
				ex.resetDeadline(ex.start)
				continue
			}
			if ex.h.onTimeout == workerpool.CancelRequest && !ex.expired {
				ex.expire()
				continue
			}
			ex.timedOut = true
			return 0, nil, true, false
		}
		if err != nil {
			return 0, nil, true, ex.workerLost(err)
		}
		if ex.expired {
			if done, err := ex.drainExpired(t, p); done || err != nil {
				return 0, nil, true, err == nil
			}
			continue
		}
		return t, p, false, false
	}
}

// expire handles an ASGI request past its deadline. The worker runs many requests on one
// event loop, so it is not killed: the client gets 504, the app gets http.disconnect, and
// the worker has asgiCancelGrace to end the exchange.
func (ex *exchange) expire() {
	ex.expired = true
	ex.logger().Error("request timed out; cancelling it", zap.Duration("elapsed", time.Since(ex.start)), zap.Duration("timeout", ex.timeout))
	ex.fail(http.StatusGatewayTimeout)
	if ex.code == http.StatusGatewayTimeout {
		http.NewResponseController(ex.w).Flush() // now, not when the worker gives up
	}
	ex.discard = true
	ex.cancel()
	ex.conn.Raw().SetReadDeadline(time.Now().Add(asgiCancelGrace))
}

// drainExpired reads the frames of an expired exchange up to its end.
func (ex *exchange) drainExpired(t protocol.Type, p []byte) (done bool, err error) {
	switch t {
	case protocol.TypeEnd, protocol.TypeError:
		return true, nil
	case protocol.TypeHeaders:
		hd, err := protocol.DecodeHeaders(p)
		return err == nil && hd.Final, err
	case protocol.TypeRead:
		return false, ex.conn.Write(protocol.DataFrame(nil, protocol.DataAborted, nil))
	case protocol.TypeFile:
		f, err := ex.conn.TakeFile("wsgi.file_wrapper")
		if err == nil {
			f.Close()
		}
		return false, err
	case protocol.TypeRing:
		return false, ex.conn.AttachRing(p)
	case protocol.TypeRingBody:
		_, slot, ring, err := ex.conn.TakeRingBody(p)
		if err == nil {
			ring.Free(slot)
		}
		return false, err
	case protocol.TypeLog:
		level, text, err := protocol.DecodeLog(p)
		if err == nil {
			ex.logFromWorker(level, text)
		}
		return false, err
	}
	return false, nil
}

// logger returns the exchange's logger, built on first use: most requests log nothing.
func (ex *exchange) logger() *zap.Logger {
	if ex.log == nil {
		ex.log = ex.h.log.With(zap.Int("pid", ex.slot.PID()), zap.String("method", ex.r.Method), zap.String("uri", ex.r.RequestURI))
	}
	return ex.log
}

// cancel tells the worker the client is gone, once.
func (ex *exchange) cancel() {
	ex.cancelOnce.Do(func() { ex.slot.Cancel(ex.order) })
}

// handle processes one frame; done means the exchange is over.
func (ex *exchange) handle(t protocol.Type, p []byte) (done bool, err error) {
	switch t {
	case protocol.TypeRead:
		n, err := protocol.DecodeRead(p)
		if err != nil {
			return false, err
		}
		return false, ex.answerRead(n)
	case protocol.TypeHeaders:
		if ex.started {
			return false, errors.New("second HEADERS frame")
		}
		hd, err := protocol.DecodeHeaders(p)
		if err != nil {
			return false, err
		}
		ex.started = true
		ex.startResponse(hd)
		if hd.Final {
			ex.writeBody(hd.Body, false)
			return true, nil
		}
		ex.writeBody(hd.Body, true)
		return false, nil
	case protocol.TypeBody:
		if !ex.started {
			return false, errors.New("BODY before HEADERS")
		}
		ex.writeBody(p, true)
		return false, nil
	case protocol.TypeRingBody:
		if !ex.started {
			return false, errors.New("RING_BODY before HEADERS")
		}
		return false, ex.writeRingBlock(p)
	case protocol.TypeRing:
		return false, ex.conn.AttachRing(p)
	case protocol.TypeFile:
		if !ex.started {
			return false, errors.New("FILE before HEADERS")
		}
		return false, ex.sendFile(p)
	case protocol.TypeEnd:
		if !ex.started {
			return false, errors.New("END before HEADERS")
		}
		return true, nil
	case protocol.TypeError:
		if ex.r.Context().Err() != nil || ex.expired {
			// The worker stopped because we cancelled: expected, not an app failure.
			ex.logger().Debug("request ended after the client left", zap.String("reason", string(p)))
		} else {
			ex.logger().Error("application error", zap.String("traceback", string(p)))
		}
		if ex.written {
			ex.abort = true
		} else {
			ex.fail(http.StatusInternalServerError)
		}
		return true, nil
	case protocol.TypeLog:
		level, text, err := protocol.DecodeLog(p)
		if err != nil {
			return false, err
		}
		ex.logFromWorker(level, text)
		return false, nil
	case protocol.TypeTrailers:
		if !ex.started || ex.h.app != workerpool.ASGIScope {
			return false, errors.New("TRAILERS before HEADERS or from a WSGI worker")
		}
		return false, ex.addTrailers(p)
	case protocol.TypeInformational:
		return false, ex.informational(p)
	}
	return false, errors.New("unexpected frame during a request")
}

func (ex *exchange) logFromWorker(level byte, text string) {
	switch level {
	case 0:
		ex.logger().Info(text)
	case 1:
		ex.logger().Warn(text)
	default:
		ex.logger().Error(text)
	}
}

// workerLost handles a channel that failed mid-exchange: the worker died or broke.
func (ex *exchange) workerLost(err error) bool {
	ex.logger().Error("worker lost during request", zap.Error(err))
	ex.fail(http.StatusBadGateway)
	return false
}

// status is the code sent to the client, for metrics; an aborted response counts as 502.
func (ex *exchange) status() int {
	if ex.abort || ex.code == 0 {
		return http.StatusBadGateway
	}
	return ex.code
}

// fail answers with an error status, or aborts when the response has begun.
func (ex *exchange) fail(code int) {
	if ex.written {
		ex.abort = true
		return
	}
	ex.code = code
	ex.pending = false
	ex.written = true
	if ex.r.Context().Err() != nil {
		return // nobody to tell
	}
	// As http.Error, with a length: the answer is complete even if flushed early (a
	// cancelled ASGI request gets its 504 while the worker may still hold the exchange).
	body := http.StatusText(code) + "\n"
	h := ex.w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	ex.w.WriteHeader(code)
	io.WriteString(ex.w, body)
}
