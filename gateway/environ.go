package gateway

import (
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddy-wsgi/caddy-wsgi/protocol"
	"github.com/caddy-wsgi/caddy-wsgi/workerpool"
)

// Request is what the server knows about a request beyond net/http's view of it:
// the Caddy adapter fills it from Caddy's context (client IP under trusted proxies,
// the original URI before rewrites, a stripped prefix).
type Request struct {
	ClientIP   string // REMOTE_ADDR; default: the peer address
	RawURI     string // RAW_URI, the request target as received; default r.RequestURI
	ScriptName string // SCRIPT_NAME (decoded): a prefix already stripped from r.URL.Path
	Scheme     string // wsgi.url_scheme; default https under TLS, else http
}

// headerKeys caches the CGI names of common headers so the hot path does not build them.
type headerKeys map[string]string

func newHeaderKeys() headerKeys {
	k := headerKeys{}
	for _, name := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Connection", "Cookie", "Dnt", "If-Modified-Since", "If-None-Match", "Origin",
		"Pragma", "Referer", "Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site",
		"Upgrade-Insecure-Requests", "User-Agent", "X-Forwarded-For", "X-Forwarded-Host",
		"X-Forwarded-Proto", "X-Real-Ip", "X-Requested-With", "X-Csrftoken", "Expect",
		"Range", "If-Match", "If-Range", "Te", "Priority", "Upgrade",
	} {
		k[name] = cgiName(name)
	}
	return k
}

func (k headerKeys) key(name string) string {
	if v, ok := k[name]; ok {
		return v
	}
	return cgiName(name)
}

// cgiName turns a canonical header name into its environ key (X-Foo → HTTP_X_FOO).
func cgiName(name string) string {
	var b strings.Builder
	b.Grow(5 + len(name))
	b.WriteString("HTTP_")
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '-':
			c = '_'
		case 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// writeEnviron adds the CGI and HTTP_* keys of r to the request frame. contentLength is
// the body size when known (-1 otherwise). It reports a header that cannot be passed on.
func (h *Handler) writeEnviron(fw *protocol.RequestWriter, r *http.Request, info Request, contentLength int64, streamed bool) error {
	fw.Add("REQUEST_METHOD", r.Method)
	path := r.URL.Path
	script := strings.TrimSuffix(info.ScriptName, "/") // already stripped from the path
	if script == "" {
		// The configured script_name is still part of the path: strip it once.
		script = strings.TrimSuffix(h.scriptName, "/")
		if script != "" && (path == script || strings.HasPrefix(path, script+"/")) {
			path = path[len(script):]
		}
	}
	fw.Add("SCRIPT_NAME", script)
	fw.Add("PATH_INFO", path)
	fw.Add("QUERY_STRING", r.URL.RawQuery)
	raw := info.RawURI
	if raw == "" {
		raw = r.RequestURI
	}
	fw.Add("RAW_URI", raw)
	fw.Add("SERVER_PROTOCOL", r.Proto)

	scheme := info.Scheme
	if scheme == "" {
		scheme = "http"
		if r.TLS != nil {
			scheme = "https"
		}
	}
	fw.Add("wsgi.url_scheme", scheme)
	host, port := splitHostPort(r.Host)
	if h.app == workerpool.ASGIScope {
		host, port = "", "" // ASGI's server is the listening address, not the Host header
	}
	if host == "" {
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			host, port = splitHostPort(la.String())
		}
	}
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	fw.Add("SERVER_NAME", host)
	fw.Add("SERVER_PORT", port)

	peerIP, peerPort := splitHostPort(r.RemoteAddr)
	clientIP := info.ClientIP
	if clientIP == "" {
		clientIP = peerIP
	}
	fw.Add("REMOTE_ADDR", clientIP)
	if clientIP == peerIP && peerPort != "" {
		// The port belongs to the peer; behind a trusted proxy it would be the proxy's.
		fw.Add("REMOTE_PORT", peerPort)
	}

	if ct := r.Header["Content-Type"]; len(ct) > 0 {
		fw.Add("CONTENT_TYPE", ct[0])
	}
	if contentLength >= 0 {
		fw.Add("CONTENT_LENGTH", strconv.FormatInt(contentLength, 10))
	} else if streamed {
		fw.Add("HTTP_TRANSFER_ENCODING", "chunked")
	}
	if h.app == workerpool.ASGIScope {
		return h.writeASGIHeaders(fw, r)
	}
	return h.writeWSGIHeaders(fw, r)
}

// writeWSGIHeaders adds the headers as PEP 3333 wants them: HTTP_* keys, the values of a
// repeated header joined.
func (h *Handler) writeWSGIHeaders(fw *protocol.RequestWriter, r *http.Request) error {
	if r.Host != "" {
		fw.Add("HTTP_HOST", r.Host)
	}
	for name, values := range r.Header {
		if name == "Content-Type" || name == "Content-Length" || strings.IndexByte(name, '_') >= 0 {
			// Underscored names would alias dashed ones (X_Forwarded_For spoofing X-Forwarded-For).
			continue
		}
		for _, v := range values {
			if strings.IndexByte(v, 0) >= 0 {
				return errNULHeader
			}
		}
		fw.Add(h.keys.key(name), values[0])
		if len(values) > 1 {
			sep := ","
			if name == "Cookie" {
				sep = "; " // HTTP/2 cookie crumbs (RFC 9113 §8.2.3)
			}
			for _, v := range values[1:] {
				fw.AppendValue(sep)
				fw.AppendValue(v)
			}
		}
	}
	return nil
}

func splitHostPort(hostport string) (string, string) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), ""
	}
	return host, port
}
