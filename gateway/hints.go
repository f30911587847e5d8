package gateway

import (
	"fmt"
	"strconv"

	"github.com/caddy-wsgi/caddy-wsgi/protocol"
	"go.uber.org/zap"
)

// maxInformational bounds the 1xx responses of one request: Go's and quic-go's clients
// fail a request after 5, and browsers act on the first 103 only.
const maxInformational = 5

// informational sends an INFORMATIONAL frame's 1xx response (103 Early Hints) to the
// client. The 1xx carries the app's headers only: what Caddy's handlers set before us
// stays for the final response, and the hints do not leak into it (as with Gunicorn,
// the app puts them in its final headers itself if it wants them there). It is dropped,
// as Gunicorn drops it, once the final response has begun, and for HTTP/1.0 clients,
// which know no 1xx (RFC 9110, section 15.2).
func (ex *exchange) informational(p []byte) error {
	first, fields, err := protocol.DecodeBlock(p)
	if err != nil {
		return err
	}
	code, err := strconv.Atoi(first)
	if err != nil || len(first) != 3 || code < 102 || code > 199 {
		// The worker checks the status; anything else is a broken worker.
		return fmt.Errorf("%w: INFORMATIONAL status %q is not 102-199", protocol.ErrProtocol, first)
	}
	if ex.started || ex.written || ex.discard || ex.r.Context().Err() != nil ||
		(ex.r.ProtoMajor == 1 && ex.r.ProtoMinor == 0) {
		return nil
	}
	if ex.informationals >= maxInformational {
		if ex.informationals == maxInformational {
			ex.logger().Warn("more informational responses than a client accepts; dropping the rest", zap.Int("limit", maxInformational))
		}
		ex.informationals++
		return nil
	}
	ex.informationals++
	h := ex.w.Header()
	saved := h.Clone()
	clear(h)
	if _, err := applyHeaders(h, fields); err != nil {
		ex.logger().Error("informational response dropped", zap.Int("status", code), zap.Error(err))
	} else {
		ex.w.WriteHeader(code)
	}
	clear(h)
	for k, v := range saved {
		h[k] = v
	}
	return nil
}
