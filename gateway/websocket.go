package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/caddy-wsgi/caddy-wsgi/protocol"
	"github.com/caddy-wsgi/caddy-wsgi/websocket"
	"go.uber.org/zap"
)

// closeWait bounds the close handshake: how long a client has to answer our close frame.
const closeWait = 5 * time.Second

// serveWebSocket runs one WebSocket through an ASGI worker. The app decides the
// handshake (websocket.accept; websocket.close, which is a 403; or a denial response),
// then messages go both ways until either side closes. Caddy does the RFC 6455 framing;
// the worker sees whole messages.
func (h *Handler) serveWebSocket(w http.ResponseWriter, r *http.Request, info Request) {
	if err := websocket.CheckRequest(r); err != nil {
		var he *websocket.HandshakeError
		errors.As(err, &he)
		if he.Status == http.StatusUpgradeRequired {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		http.Error(w, err.Error(), he.Status)
		return
	}
	fw := h.writers.Get().(*protocol.RequestWriter)
	defer h.writers.Put(fw)
	fw.Begin(protocol.RequestWS)
	if err := h.writeEnviron(fw, r, info, -1, false); err != nil {
		http.Error(w, "Bad Request: "+err.Error(), http.StatusBadRequest)
		return
	}
	frame, err := fw.Finish(nil)
	if err != nil {
		http.Error(w, "Request Header Fields Too Large", http.StatusRequestHeaderFieldsTooLarge)
		return
	}
	ws := &wsExchange{exchange: exchange{h: h, w: w, r: r, timeout: h.timeout, noWatch: true}}
	h.serve(ws, frame, false) // nothing may queue behind a WebSocket
}

func (ex *wsExchange) describe() string { return "WEBSOCKET " + ex.r.RequestURI }

// wsExchange is a WebSocket over a worker channel. Before the handshake it is an HTTP
// exchange (a refusal or a denial response is plain HTTP).
type wsExchange struct {
	exchange
	denied bool        // the app closed before accepting: 403 sent
	ended  atomic.Bool // the worker ended the exchange: forward nothing more
}

// run drives the handshake, then the open WebSocket. It reports whether the channel is
// still in a known state.
func (ex *wsExchange) run() bool {
	ex.start = time.Now()
	ex.resetDeadline(ex.start)
	for {
		t, p, end, healthy := ex.readFrame()
		if end {
			return healthy
		}
		switch {
		case t == protocol.TypeWSAccept:
			return ex.accept(p)
		case t == protocol.TypeWSClose && !ex.started && !ex.denied:
			// ASGI: a close before the accept refuses the handshake with 403.
			ex.fail(http.StatusForbidden)
			ex.denied = true
			continue
		case ex.denied && t == protocol.TypeEnd:
			return true
		case ex.denied && t == protocol.TypeWSClose:
			continue // the 403 is out; a second close changes nothing
		case t == protocol.TypeWSSend || t == protocol.TypeWSClose || t == protocol.TypeTrailers:
			return ex.brokeProtocol(errors.New("WebSocket frame before the handshake"))
		}
		done, err := ex.handle(t, p) // a denial response, an error, a log line
		if over, healthy := ex.settle(done, err); over {
			return healthy
		}
	}
}

// accept completes the handshake the app accepted and relays messages until the end.
func (ex *wsExchange) accept(p []byte) bool {
	subprotocol, fields, err := protocol.DecodeBlock(p)
	if err != nil {
		return ex.brokeProtocol(err)
	}
	header := http.Header{}
	if _, err = applyHeaders(header, fields); err == nil && !validToken(subprotocol) {
		err = errors.New("invalid subprotocol " + subprotocol)
	}
	for _, k := range []string{"Sec-Websocket-Accept", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions", "Content-Length"} {
		delete(header, k) // ours to set: the handshake would break
	}
	var conn *websocket.Conn
	if err == nil {
		conn, err = websocket.Accept(ex.w, ex.r, subprotocol, header, ex.h.ws)
	}
	if err != nil {
		ex.logger().Error("websocket accept failed", zap.Error(err))
		if !ex.written {
			ex.fail(http.StatusInternalServerError)
		}
		ex.written = true
		return ex.abandon()
	}
	ex.code, ex.written = http.StatusSwitchingProtocols, true
	return ex.relay(conn)
}

// abandon tells the worker the client is gone and waits for the end of the exchange.
func (ex *wsExchange) abandon() bool {
	if err := ex.conn.Write(protocol.WSCloseFrame(protocol.TypeWSDisconnect, websocket.CloseAbnormal, "")); err != nil {
		return ex.workerLost(err)
	}
	ex.conn.Raw().SetReadDeadline(time.Now().Add(asgiCancelGrace))
	for {
		t, p, err := ex.conn.ReadFrame()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			ex.timedOut = true
			return false
		}
		if err != nil {
			return ex.workerLost(err)
		}
		if t == protocol.TypeEnd || t == protocol.TypeError {
			return true
		}
		if t == protocol.TypeLog {
			if level, text, err := protocol.DecodeLog(p); err == nil {
				ex.logFromWorker(level, text)
			}
		}
	}
}

// relay runs the open WebSocket: worker frames to the client here, client messages to
// the worker from a second goroutine, which has ended when relay returns (the channel
// can then be reused).
func (ex *wsExchange) relay(conn *websocket.Conn) (healthy bool) {
	ex.conn.Raw().SetReadDeadline(time.Time{}) // an open WebSocket may idle for hours
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		ex.forwardClient(conn)
	}()
	// A reload that replaces the pool, recycling or a restart retires the worker: the
	// client is told to reconnect (1012), so the drain does not wait graceful_timeout.
	watchDone, watcherDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watcherDone)
		poolGone, workerGone := ex.h.pool.Retiring(ex.slot)
		select {
		case <-poolGone:
		case <-workerGone:
		case <-watchDone:
			return
		}
		conn.WriteClose(websocket.CloseServiceRestart, "service restart")
		select { // the client's answer ends the exchange; if it never comes, close
		case <-time.After(closeWait):
			conn.Close()
		case <-watchDone:
		}
	}()
	// broken: the worker broke the protocol; the client gets 1011, the worker is replaced.
	broken := func(err error) bool {
		ex.logger().Error("worker broke the protocol", zap.Error(err))
		conn.WriteClose(websocket.CloseInternalError, "")
		return false
	}
	healthy = true
	var closer *time.Timer // closes the connection if the client never answers our close
	defer func() {
		ex.ended.Store(true)
		conn.WriteClose(websocket.CloseNormal, "") // unless a close already went out
		select {
		case <-readerDone: // the client answered the close, or left
		case <-time.After(closeWait):
		}
		conn.Close()
		<-readerDone
		close(watchDone)
		<-watcherDone
		if closer != nil {
			closer.Stop()
		}
	}()
	for {
		t, p, err := ex.conn.ReadFrame()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The client left and the worker did not end the exchange in time: its event
			// loop is blocked.
			ex.timedOut = true
			conn.WriteClose(websocket.CloseInternalError, "")
			return false
		}
		if err != nil {
			ex.logger().Error("worker lost during a WebSocket", zap.Error(err))
			conn.WriteClose(websocket.CloseInternalError, "")
			return false
		}
		switch t {
		case protocol.TypeWSSend:
			binaryData, more, data, err := protocol.DecodeWSMessage(p)
			if err != nil {
				return broken(err)
			}
			if err := conn.WriteFragment(binaryData, data, !more); err != nil && !errors.Is(err, websocket.ErrClosed) {
				conn.Close() // the client is gone: the reader tells the worker
			}
		case protocol.TypeWSClose:
			code, reason, err := protocol.DecodeWSClose(p)
			if err != nil {
				return broken(err)
			}
			conn.WriteClose(code, reason)
			if closer == nil {
				closer = time.AfterFunc(closeWait, func() { conn.Close() })
			}
		case protocol.TypeLog:
			level, text, err := protocol.DecodeLog(p)
			if err == nil {
				ex.logFromWorker(level, text)
			}
		case protocol.TypeError:
			ex.logger().Error("application error", zap.String("traceback", string(p)))
			conn.WriteClose(websocket.CloseInternalError, "")
			return true
		case protocol.TypeEnd:
			return true
		default:
			return broken(fmt.Errorf("frame type %#x during a WebSocket", byte(t)))
		}
	}
}

// forwardClient reads the client's messages and passes them to the worker, then tells
// the worker how the client closed.
func (ex *wsExchange) forwardClient(conn *websocket.Conn) {
	for {
		binaryData, data, err := conn.ReadMessage()
		if err != nil {
			code, reason := websocket.CloseAbnormal, ""
			var ce *websocket.CloseError
			var pe *websocket.ProtocolError
			switch {
			case errors.As(err, &ce):
				code, reason = ce.Code, ce.Reason
				echo := ce.Code
				if echo == websocket.CloseNoStatus {
					echo = websocket.CloseNormal
				}
				conn.WriteClose(echo, "") // RFC 6455 §5.5.1: answer with the same code
			case errors.As(err, &pe):
				code, reason = pe.Code, pe.Reason
				ex.logger().Info("websocket client broke the protocol", zap.Error(err))
				conn.WriteClose(pe.Code, pe.Reason)
			}
			conn.Close() // the server closes the TCP connection first (RFC 6455 §7.1.1)
			if !ex.ended.Load() {
				// The worker ends the exchange at once; a blocked loop is caught by the deadline.
				ex.conn.Raw().SetReadDeadline(time.Now().Add(asgiCancelGrace))
				ex.conn.Write(protocol.WSCloseFrame(protocol.TypeWSDisconnect, code, reason))
			}
			return
		}
		if ex.ended.Load() {
			continue
		}
		if err := ex.conn.Write(protocol.WSMessageFrame(nil, binaryData, data)); err != nil {
			conn.Close() // the worker is gone; relay sees it too
			return
		}
	}
}

// validToken reports whether s is empty or an HTTP token (a subprotocol name).
func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7F || c == '"' || c == ',' || c == ';' || c == '(' || c == ')' || c == '/' || c == '\\' || c == ':' || c == '=' || c == '?' || c == '@' || c == '[' || c == ']' || c == '{' || c == '}' {
			return false
		}
	}
	return true
}
