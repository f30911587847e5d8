package gateway

import (
	"net/http"
	"strings"

	"github.com/caddy-wsgi/caddy-wsgi/protocol"
)

// The ASGI side of the request frame: the runtime builds the scope from the same
// CGI-style keys as WSGI's environ (see writeEnviron), with the headers as received.

// asgiHeaderKeys caches the `~name` keys of common headers (see writeASGIHeaders).
func asgiHeaderKeys(cgi headerKeys) map[string]string {
	k := make(map[string]string, len(cgi)+2)
	for name := range cgi {
		k[name] = "~" + strings.ToLower(name)
	}
	k["Content-Type"] = "~content-type"
	k["Content-Length"] = "~content-length"
	return k
}

// writeASGIHeaders adds the headers as ASGI wants them: `~name` pairs, lowercase, each
// value apart and in the order received, underscores kept (ASGI names do not alias).
func (h *Handler) writeASGIHeaders(fw *protocol.RequestWriter, r *http.Request) error {
	if r.Host != "" {
		fw.Add("~host", r.Host)
	}
	if len(r.TransferEncoding) > 0 {
		fw.Add("~transfer-encoding", strings.Join(r.TransferEncoding, ", "))
	}
	for name, values := range r.Header {
		if name[0] == ':' {
			continue // :protocol of an extended CONNECT
		}
		key, ok := h.asgiKeys[name]
		if !ok {
			key = "~" + strings.ToLower(name)
		}
		for _, v := range values {
			if strings.IndexByte(v, 0) >= 0 {
				return errNULHeader
			}
			fw.Add(key, v)
		}
	}
	return nil
}
