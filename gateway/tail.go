package gateway

import (
	"net/http"
	"time"
)

// exchanger is an exchange the shared tail drives: an HTTP request or a WebSocket.
type exchanger interface {
	base() *exchange
	describe() string    // what the slot serves, for the admin API and the timeout log
	run() (healthy bool) // the REQUEST frame is sent: read the worker's side until the end
}

// serve is the tail every exchange shares: dispatch to a worker thread, run, kill the
// worker if the exchange is stuck past its deadline, release, observe. pipelinable: the
// request is complete in frame, so it may queue behind a running exchange.
func (h *Handler) serve(x exchanger, frame []byte, pipelinable bool) {
	ex := x.base()
	queued := time.Now()
	lease, sendErr, err := h.dispatch(ex.r, frame, pipelinable)
	if err != nil {
		h.unavailable(ex.w, ex.r, err)
		h.observe(time.Since(queued), 0, http.StatusServiceUnavailable)
		return
	}
	dispatched := time.Now()
	ex.slot, ex.conn, ex.order = lease.Slot, lease.Slot.Conn(), lease.Order
	desc := x.describe()
	ex.slot.Begin(desc)
	var healthy bool
	if sendErr != nil {
		healthy = ex.workerLost(sendErr)
	} else {
		healthy = x.run()
		ex.conn.Raw().SetReadDeadline(time.Time{}) // the next exchange on this channel sets its own
	}
	if ex.timedOut {
		h.pool.KillStuck(ex.slot, desc, time.Since(ex.start))
		if !ex.expired { // an expired ASGI request already had its 504
			ex.fail(http.StatusGatewayTimeout)
		}
	}
	h.pool.Release(lease, healthy)
	ex.endPump() // the worker is already free while a slow client reads
	ex.sendTrailers()
	h.observe(dispatched.Sub(queued), time.Since(dispatched), ex.status())
	if ex.abort {
		// The response was already started: make the client see a broken response,
		// never a complete-looking one (HTTP/1.1: no last chunk; HTTP/2: RST_STREAM).
		panic(http.ErrAbortHandler)
	}
}

func (ex *exchange) base() *exchange { return ex }

func (ex *exchange) describe() string { return ex.r.Method + " " + ex.r.RequestURI }
