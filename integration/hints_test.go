//go:build linux

package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
)

const hintStyle = "</style.css>; rel=preload; as=style"
const hintScript = "</app.js>; rel=preload; as=script"

// hintsSite serves integration/testdata/apps/hints.py with wsgi under /wsgi/ and asgi
// under /asgi/, over HTTP (port {PORT}) and HTTPS with HTTP/2 and HTTP/3 ({HTTPS_PORT}).
const hintsSite = `
	header X-Caddy site
	handle_path /wsgi/* {
		wsgi hints {
			python {PYTHON}
			chdir {APPS}
			workers 1
		}
	}
	handle_path /asgi/* {
		asgi hints:asgi_app {
			python {PYTHON}
			chdir {APPS}
			workers 1
		}
	}
`

func startHints(t *testing.T) *Caddy {
	c := startCaddy(t, globalBlock("skip_install_trust", "local_certs")+
		"http://127.0.0.1:{PORT} {"+hintsSite+"}\n"+
		"https://localhost:{HTTPS_PORT} {\n\ttls internal"+hintsSite+"}\n")
	waitStatus(t, c.URL+"/wsgi/", 200, 30*time.Second)
	waitStatus(t, c.URL+"/asgi/", 200, 30*time.Second)
	// The internal certificate is issued after the listeners start: wait for it.
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}}
	defer tr.CloseIdleConnections()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		req, _ := http.NewRequest("GET", c.HTTPSURL+"/wsgi/", nil)
		req.Host = fmt.Sprintf("localhost:%d", c.HTTPSPort)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no HTTPS answer: %v", err)
		}
	}
}

type informational struct {
	code   int
	header textproto.MIMEHeader
}

// traced does one request with rt, recording its 1xx responses (httptrace).
func traced(t *testing.T, rt http.RoundTripper, url, host string) ([]informational, *http.Response, string) {
	t.Helper()
	var mu sync.Mutex
	var got []informational
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, informational{code, h})
		return nil
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), "GET", url, nil)
	req.Host = host
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	mu.Lock()
	defer mu.Unlock()
	return got, resp, string(body)
}

// checkHints checks the two 103s of hints.py and a final response they did not leak into.
func checkHints(t *testing.T, what string, got []informational, resp *http.Response, body, proto string) {
	t.Helper()
	if len(got) != 2 {
		t.Fatalf("%s: %d informational responses, want 2: %v", what, len(got), got)
	}
	for i, want := range [][]string{{hintStyle}, {hintScript}} {
		if got[i].code != 103 || strings.Join(got[i].header["Link"], ",") != want[0] {
			t.Errorf("%s: 1xx #%d = %d %v, want 103 with Link %q", what, i+1, got[i].code, got[i].header, want[0])
		}
		if got[i].header.Get("X-Caddy") != "" || got[i].header.Get("Content-Type") != "" {
			t.Errorf("%s: 1xx #%d carries headers that are not the app's hints: %v", what, i+1, got[i].header)
		}
	}
	if got[1].header.Get("X-Hint") != "two" {
		t.Errorf("%s: the second 103 lost X-Hint: %v", what, got[1].header)
	}
	if resp.StatusCode != 200 || body != "final:"+proto {
		t.Errorf("%s: final %d %q, want 200 %q", what, resp.StatusCode, body, "final:"+proto)
	}
	if l := resp.Header.Values("Link"); len(l) != 0 || resp.Header.Get("X-Hint") != "" {
		t.Errorf("%s: the hints leaked into the final response: Link %q, X-Hint %q", what, l, resp.Header.Get("X-Hint"))
	}
	if resp.Header.Get("X-Caddy") != "site" {
		t.Errorf("%s: Caddy's own header is missing from the final response: %v", what, resp.Header)
	}
}

// TestEarlyHintsCurl: curl sees `HTTP/1.1 103` before the 200, over plain HTTP/1.1 and
// over HTTP/2 with TLS; an HTTP/1.0 client gets no 1xx (RFC 9110, section 15.2).
func TestEarlyHintsCurl(t *testing.T) {
	t.Parallel()
	c := startHints(t)
	curl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("curl", append([]string{"-sS", "-v", "--max-time", "30", "-k"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	https := fmt.Sprintf("https://localhost:%d", c.HTTPSPort)
	resolve := fmt.Sprintf("localhost:%d:127.0.0.1", c.HTTPSPort)
	for _, app := range []string{"wsgi", "asgi"} {
		out := curl("--http1.1", c.URL+"/"+app+"/")
		hint := strings.Index(out, "< HTTP/1.1 103 Early Hints")
		final := strings.Index(out, "< HTTP/1.1 200 OK")
		if hint < 0 || final < hint || strings.Count(out, "< HTTP/1.1 103") != 2 {
			t.Errorf("%s over HTTP/1.1: want two 103s before the 200:\n%s", app, out)
		}
		if !strings.Contains(out[hint:final], "< Link: "+hintStyle) || !strings.Contains(out[hint:final], "< Link: "+hintScript) {
			t.Errorf("%s over HTTP/1.1: the 103s lack their Link headers:\n%s", app, out)
		}
		if strings.Contains(out[final:], "< Link:") {
			t.Errorf("%s over HTTP/1.1: Link in the final response:\n%s", app, out)
		}
		want := "final:HTTP/1.1"
		if app == "asgi" {
			want = "final:1.1"
		}
		if !strings.HasSuffix(strings.TrimSpace(out), want) {
			t.Errorf("%s over HTTP/1.1: body is not %q:\n%s", app, want, out)
		}

		out = curl("--http2", "--resolve", resolve, https+"/"+app+"/")
		hint, final = strings.Index(out, "< HTTP/2 103"), strings.Index(out, "< HTTP/2 200")
		if hint < 0 || final < hint || !strings.Contains(out[hint:final], "< link: "+hintStyle) {
			t.Errorf("%s over HTTP/2 (curl): want a 103 with its Link before the 200:\n%s", app, out)
		}

		out = curl("--http1.0", c.URL+"/"+app+"/")
		if strings.Contains(out, " 103") || !strings.Contains(out, "< HTTP/1.0 200 OK") && !strings.Contains(out, "< HTTP/1.1 200 OK") {
			t.Errorf("%s over HTTP/1.0: want a 200 and no 103:\n%s", app, out)
		}
	}
}

// TestEarlyHintsGoClients: Go's HTTP/1.1 and HTTP/2 clients and quic-go's HTTP/3 client
// see both 103s (httptrace Got1xxResponse) with the app's hints only.
func TestEarlyHintsGoClients(t *testing.T) {
	t.Parallel()
	c := startHints(t)
	host := fmt.Sprintf("localhost:%d", c.HTTPSPort)
	tlsConf := &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}
	h1 := &http.Transport{DisableKeepAlives: true}
	h2 := &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true}
	h3 := &http3.Transport{TLSClientConfig: tlsConf}
	defer h2.CloseIdleConnections()
	defer h3.Close()
	for _, app := range []string{"wsgi", "asgi"} {
		got, resp, body := traced(t, h1, c.URL+"/"+app+"/", "127.0.0.1")
		proto := map[string]string{"wsgi": "HTTP/1.1", "asgi": "1.1"}[app]
		checkHints(t, app+" over HTTP/1.1", got, resp, body, proto)

		got, resp, body = traced(t, h2, c.HTTPSURL+"/"+app+"/", host)
		if resp.ProtoMajor != 2 {
			t.Fatalf("not HTTP/2: %s", resp.Proto)
		}
		proto = map[string]string{"wsgi": "HTTP/2.0", "asgi": "2"}[app]
		checkHints(t, app+" over HTTP/2", got, resp, body, proto)

		got, resp, body = traced(t, h3, c.HTTPSURL+"/"+app+"/", host)
		if resp.ProtoMajor != 3 {
			t.Fatalf("not HTTP/3: %s", resp.Proto)
		}
		proto = map[string]string{"wsgi": "HTTP/3.0", "asgi": "3"}[app]
		checkHints(t, app+" over HTTP/3", got, resp, body, proto)
	}
}
