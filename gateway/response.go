package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

var errNULHeader = errors.New("request header value holds a NUL byte")

// hopByHop headers describe one connection; an app must not set them (PEP 3333), and
// passing them on would corrupt Caddy's own framing.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Trailers": true,
	"Transfer-Encoding": true, "Upgrade": true, "Proxy-Connection": true,
}

// parseStatus reads the code of a WSGI status line ("200 OK").
func parseStatus(status string) (int, error) {
	if len(status) < 3 || (len(status) > 3 && status[3] != ' ') {
		return 0, fmt.Errorf("status %q is not \"NNN reason\"", status)
	}
	code, err := strconv.Atoi(status[:3])
	if err != nil || code < 200 || code > 999 {
		// 1xx cannot be a final response; informational answers are not WSGI's to send.
		return 0, fmt.Errorf("status %q is not a final HTTP status", status)
	}
	if strings.ContainsAny(status, "\r\n\x00") {
		return 0, fmt.Errorf("status %q holds CR, LF or NUL", status)
	}
	return code, nil
}

// applyHeaders validates the app's headers and copies them to dst. It returns the names
// of dropped hop-by-hop headers, or an error that makes the response a 500.
func applyHeaders(dst http.Header, fields []string) (dropped []string, err error) {
	for i := 0; i+1 < len(fields); i += 2 {
		name, value := fields[i], fields[i+1]
		if !httpguts.ValidHeaderFieldName(name) {
			return nil, fmt.Errorf("invalid response header name %q", name)
		}
		if !httpguts.ValidHeaderFieldValue(value) {
			return nil, fmt.Errorf("invalid value for response header %q: %q", name, value)
		}
		key := http.CanonicalHeaderKey(name)
		if hopByHop[key] {
			dropped = append(dropped, key)
			continue
		}
		if key == "Content-Length" {
			if _, perr := strconv.ParseUint(value, 10, 63); perr != nil || len(dst[key]) > 0 {
				return nil, fmt.Errorf("invalid Content-Length %q", value)
			}
		}
		dst[key] = append(dst[key], value)
	}
	return dropped, nil
}

// bodyAllowed reports whether a response with this code to this method has a body.
func bodyAllowed(method string, code int) bool {
	return method != http.MethodHead && code != http.StatusNoContent && code != http.StatusNotModified && code >= 200
}
