package gateway

import (
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"
)

// checkRequest returns why r must get 400 before a worker sees it, or "". Go's parser
// lets these through; the bridge is the last parser before the app, so it applies the
// RFCs' refusals. It must stay cheap: a few map lookups and byte scans, no allocation
// for a well-formed request.
func checkRequest(r *http.Request) string {
	if len(r.Header["Content-Type"]) > 1 {
		// RFC 9110 §5.3: Content-Type is a singleton field; two values are ambiguous.
		return "repeated Content-Type"
	}
	if uri := r.RequestURI; uri != "" && uri[0] != '/' {
		// RFC 9112 §3.2: `*` is for OPTIONS, the authority form for CONNECT; any other
		// target that is not a path must be a full URL (absolute form).
		switch {
		case uri == "*":
			if r.Method != http.MethodOptions {
				return "asterisk-form target on " + r.Method
			}
		case r.Method == http.MethodConnect:
		case r.URL.Scheme == "" || r.URL.Host == "" || !strings.Contains(uri, "://"):
			return "authority-form target on " + r.Method
		}
	}
	return ""
}

// forbiddenTrailers are the fields RFC 9110 §6.5.1 says must never be trailers: framing,
// routing, request modifiers, authentication and content processing.
var forbiddenTrailers = map[string]bool{
	"Authorization": true, "Cache-Control": true, "Connection": true, "Content-Encoding": true,
	"Content-Length": true, "Content-Range": true, "Content-Type": true, "Cookie": true,
	"Expect": true, "Host": true, "If-Match": true, "If-Modified-Since": true,
	"If-None-Match": true, "If-Range": true, "If-Unmodified-Since": true, "Keep-Alive": true,
	"Max-Forwards": true, "Pragma": true, "Proxy-Authorization": true, "Proxy-Connection": true,
	"Range": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// checkTrailers returns the first received trailer field that must not be a trailer, or
// "". Trailers are known once the body is read: it runs for buffered bodies only.
func checkTrailers(r *http.Request) string {
	for k := range r.Trailer {
		if forbiddenTrailers[http.CanonicalHeaderKey(k)] {
			return http.CanonicalHeaderKey(k)
		}
	}
	return ""
}

// stripFragment removes a fragment sent in the request target (`/p?a=1#frag`): it is
// the client's and never part of PATH_INFO or QUERY_STRING (as Gunicorn does). Go's
// parser keeps it in the path or the query.
func stripFragment(r *http.Request) {
	raw := r.RequestURI
	hash := strings.IndexByte(raw, '#')
	if hash < 0 {
		return
	}
	q := strings.IndexByte(raw, '?')
	if q >= 0 && q < hash {
		// In the query: the raw query is never decoded, so cut it at its '#'.
		if i := strings.IndexByte(r.URL.RawQuery, '#'); i >= 0 {
			r.URL.RawQuery = r.URL.RawQuery[:i]
		}
		return
	}
	// In the path: the rest of the target (a '?' included) is the fragment.
	end := len(raw)
	if q > hash {
		end = q
	}
	frag := raw[hash:end]
	if dec, err := url.PathUnescape(frag); err == nil {
		r.URL.Path = strings.TrimSuffix(r.URL.Path, dec)
	}
	r.URL.RawPath = strings.TrimSuffix(r.URL.RawPath, frag)
	r.URL.RawQuery = ""
}

// refuse answers 400 to a request no worker will see, logs why once, and counts it.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, reason string) {
	h.log.Info("bad request refused", zap.String("method", r.Method), zap.String("uri", r.RequestURI), zap.String("reason", reason))
	w.Header().Set("Connection", "close") // the framing may be unsound: no next request on it
	http.Error(w, "Bad Request: "+reason, http.StatusBadRequest)
	h.observe(0, 0, http.StatusBadRequest)
}
