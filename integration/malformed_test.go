//go:build linux

package integration

// Requests the RFCs say to refuse, that Go's parser lets through: the bridge answers
// 400 before a worker sees them, for WSGI and ASGI. Raw connections, one request each
// (no client that could retry or fix the request up).

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// seenTarget extracts (path, query) the app saw from a probe's JSON answer.
func seenTarget(t *testing.T, asgi bool, body string) (string, string) {
	t.Helper()
	if asgi {
		var d struct {
			Scope struct {
				Path        string `json:"path"`
				QueryString string `json:"query_string"`
			} `json:"scope"`
		}
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			t.Fatalf("asgi probe answer is not JSON: %v: %.300s", err, body)
		}
		return d.Scope.Path, d.Scope.QueryString
	}
	var d probeDoc
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("probe answer is not JSON: %v: %.300s", err, body)
	}
	return d.Env["PATH_INFO"], d.Env["QUERY_STRING"]
}

func TestMalformedRequestsRefused(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"wsgi", "asgi"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			app := "wsgi probe"
			if kind == "asgi" {
				app = "asgi asgi_scope_probe:app"
			}
			c := startCaddy(t, globalBlock()+`
http://:{PORT} {
	`+app+` {
		python {PYTHON}
		chdir {APPS}
		workers 1
	}
}
`)
			waitStatus(t, c.URL+"/ready", 200, 60*time.Second)
			host := fmt.Sprintf("Host: 127.0.0.1:%d\r\n", c.Port)
			refused := []struct{ name, req string }{
				{"repeated Content-Type", "POST /ct HTTP/1.1\r\n" + host +
					"Content-Type: text/plain\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"},
				// Trailers the client announced (Trailer:), then forbidden ones in the trailer
				// section; announcing a forbidden one is refused by Go's parser already.
				{"Content-Length trailer", "POST /tr HTTP/1.1\r\n" + host + "Trailer: X-Checksum\r\n" +
					"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Checksum: 1\r\nContent-Length: 50\r\n\r\n"},
				{"Host trailer", "POST /tr HTTP/1.1\r\n" + host + "Trailer: X-Checksum\r\n" +
					"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nHost: evil.example\r\n\r\n"},
				{"Transfer-Encoding trailer", "POST /tr HTTP/1.1\r\n" + host + "Trailer: X-Checksum\r\n" +
					"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nTransfer-Encoding: gzip\r\n\r\n"},
				{"announced Host trailer", "POST /tr HTTP/1.1\r\n" + host + "Trailer: Host\r\n" +
					"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nHost: evil.example\r\n\r\n"},
				{"asterisk target on GET", "GET * HTTP/1.1\r\n" + host + "\r\n"},
				{"authority-form target on GET", "GET 127.0.0.1:80 HTTP/1.1\r\n" + host + "\r\n"},
			}
			for _, tc := range refused {
				if code, body := rawExchange(t, c.Port, tc.req, false); code != http.StatusBadRequest {
					t.Errorf("%s: got %d, want 400 before the app; body %.300s", tc.name, code, body)
				}
			}
			// The same requests, well-formed, reach the app.
			allowed := []struct{ name, req string }{
				{"one Content-Type", "POST /ct HTTP/1.1\r\n" + host + "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}"},
				{"allowed trailer", "POST /tr HTTP/1.1\r\n" + host +
					"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n"},
				{"OPTIONS *", "OPTIONS * HTTP/1.1\r\n" + host + "\r\n"},
				{"absolute-form target", fmt.Sprintf("GET http://127.0.0.1:%d/abs HTTP/1.1\r\n", c.Port) + host + "\r\n"},
			}
			for _, tc := range allowed {
				if code, body := rawExchange(t, c.Port, tc.req, false); code != http.StatusOK {
					t.Errorf("%s: got %d, want 200 from the app; body %.300s", tc.name, code, body)
				}
			}

			// Unannounced trailer fields: Go keeps them off the request handlers see, and
			// the bridge passes no request trailers: the app gets the body, never the field.
			code, body := rawExchange(t, c.Port, "POST /tr HTTP/1.1\r\n"+host+
				"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nHost: evil.example\r\nContent-Length: 50\r\n\r\n", false)
			if code != http.StatusOK || strings.Contains(body, "evil.example") || strings.Contains(body, `"50"`) {
				t.Errorf("unannounced trailers: %d, the app must get the body without them: %.500s", code, body)
			}

			// A fragment never reaches the app.
			for _, tc := range []struct{ target, path, query string }{
				{"/env?a=1#frag", "/env", "a=1"},
				{"/env#frag?b=2", "/env", ""},
				{"/a%23b?c=1", "/a#b", "c=1"}, // an encoded # is part of the path
			} {
				code, body := rawExchange(t, c.Port, "GET "+tc.target+" HTTP/1.1\r\n"+host+"\r\n", false)
				if code != http.StatusOK {
					t.Errorf("GET %s: %d %.300s", tc.target, code, body)
					continue
				}
				if path, query := seenTarget(t, kind == "asgi", body); path != tc.path || query != tc.query {
					t.Errorf("GET %s: app saw path %q query %q, want %q %q", tc.target, path, query, tc.path, tc.query)
				}
			}

			// A body cut short: 400 (not an empty 200), one log line, and the metric.
			code, body = rawExchange(t, c.Port, "POST /short HTTP/1.1\r\n"+host+
				"Content-Type: text/plain\r\nContent-Length: 1000\r\n\r\n"+strings.Repeat("x", 100), true)
			if code != http.StatusBadRequest {
				t.Errorf("body cut short: got %d, want 400; body %.300s", code, body)
			}
			c.WaitLog(t, "incomplete body", 5*time.Second)
			if n := strings.Count(c.Logs(), "incomplete body"); n != 1 {
				t.Errorf("body cut short logged %d times, want once", n)
			}
		})
	}
}
