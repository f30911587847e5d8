//go:build linux

// net/http's client refuses the :protocol pseudo-header of an extended CONNECT (RFC 8441);
// x/net/http2's transport, deprecated for everything else, is the Go client that sends it.
//lint:file-ignore SA1019 see above

package integration

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"

	"github.com/caddy-wsgi/caddy-wsgi/websocket"
)

const wsAppBlock = `asgi asgi_ws_app:app {
			python {VENV}/bin/python
			chdir {APPS}
			env MARKER_DIR {TMP}
			workers 1
			max_concurrency 300
		}`

// readMarker returns the lines the app wrote to a marker file.
func readMarker(c *Caddy, name string) string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, name))
	return string(b)
}

func waitMarker(t *testing.T, c *Caddy, name, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(readMarker(c, name), substr) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("marker %s never had %q; it has %q\nlogs:\n%s", name, substr, readMarker(c, name), tail(c.Logs(), 30))
}

func dialWS(t *testing.T, url string, protocols ...string) *gws.Conn {
	t.Helper()
	d := gws.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: protocols}
	conn, resp, err := d.Dial(url, nil)
	if err != nil {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", url, err, code)
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	return conn
}

// TestASGIWebSocket runs WebSockets over HTTP/1.1 through the asgi directive with a real
// client (gorilla/websocket): echo of text, binary and large messages, subprotocols, the
// scope, close codes both ways, a refused and a denied handshake, a chat room, an app
// error, and 200 WebSockets at once on one worker.
func TestASGIWebSocket(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock()+`http://127.0.0.1:{PORT} {
	handle_path /app/* {
		`+wsAppBlock+`
	}
}
`)
	waitStatus(t, c.URL+"/app/state", 200, 60*time.Second)
	base := fmt.Sprintf("ws://127.0.0.1:%d/app", c.Port)

	t.Run("echo", func(t *testing.T) {
		conn := dialWS(t, base+"/ws/echo", "chat.v2", "chat.v1")
		defer conn.Close()
		if conn.Subprotocol() != "chat.v2" {
			t.Errorf("subprotocol %q, want chat.v2", conn.Subprotocol())
		}
		big := strings.Repeat("é", 1<<19) // 1 MiB of UTF-8
		for _, m := range []struct {
			kind int
			data string
		}{{gws.TextMessage, "héllo"}, {gws.BinaryMessage, "\x00\x01\xff"}, {gws.TextMessage, big}, {gws.TextMessage, ""}} {
			if err := conn.WriteMessage(m.kind, []byte(m.data)); err != nil {
				t.Fatal(err)
			}
			kind, got, err := conn.ReadMessage()
			if err != nil || kind != m.kind || string(got) != m.data {
				t.Fatalf("echo of %d bytes (kind %d): got kind %d, %d bytes, %v", len(m.data), m.kind, kind, len(got), err)
			}
		}
		conn.WriteMessage(gws.TextMessage, []byte("scope"))
		_, raw, err := conn.ReadMessage()
		var scope struct {
			Type, Scheme, Path string
			RootPath           string `json:"root_path"`
			HTTPVersion        string `json:"http_version"`
			Subprotocols       []string
			Headers            [][2]string
		}
		if err == nil {
			err = json.Unmarshal(raw, &scope)
		}
		if err != nil {
			t.Fatal(err)
		}
		// root_path comes from handle_path; path is the full path (ASGI).
		if scope.Type != "websocket" || scope.Scheme != "ws" || scope.Path != "/app/ws/echo" || scope.RootPath != "/app" ||
			scope.HTTPVersion != "1.1" || strings.Join(scope.Subprotocols, ",") != "chat.v2,chat.v1" {
			t.Errorf("scope: %s", raw)
		}
		if !slices.Contains(scope.Headers, [2]string{"sec-websocket-protocol", "chat.v2, chat.v1"}) {
			t.Errorf("scope headers lack the handshake's: %s", raw)
		}
	})

	t.Run("server close code", func(t *testing.T) {
		conn := dialWS(t, base+"/ws/echo")
		defer conn.Close()
		conn.WriteMessage(gws.TextMessage, []byte("close:4001:see you"))
		_, _, err := conn.ReadMessage()
		var ce *gws.CloseError
		if !errors.As(err, &ce) || ce.Code != 4001 || ce.Text != "see you" {
			t.Fatalf("want close 4001 \"see you\", got %v", err)
		}
	})

	t.Run("client close code", func(t *testing.T) {
		conn := dialWS(t, base+"/ws/echo")
		defer conn.Close()
		conn.WriteMessage(gws.CloseMessage, gws.FormatCloseMessage(4002, "client-bye"))
		_, _, err := conn.ReadMessage() // the server answers the close with the same code
		var ce *gws.CloseError
		if !errors.As(err, &ce) || ce.Code != 4002 {
			t.Errorf("close answer: %v", err)
		}
		waitMarker(t, c, "closes", "4002 client-bye", 10*time.Second)
	})

	t.Run("client vanishes", func(t *testing.T) {
		conn := dialWS(t, base+"/ws/echo")
		conn.WriteMessage(gws.TextMessage, []byte("x"))
		conn.ReadMessage()
		conn.UnderlyingConn().Close() // no close frame
		waitMarker(t, c, "closes", "1006", 10*time.Second)
	})

	t.Run("refused and denied", func(t *testing.T) {
		_, resp, err := gws.DefaultDialer.Dial(base+"/ws/deny", nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("close before accept: want 403, got %v %v", resp, err)
		}
		_, resp, err = gws.DefaultDialer.Dial(base+"/raw/", nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Www-Authenticate") != "Bearer" {
			t.Fatalf("denial response: want 401 with WWW-Authenticate, got %v %v", resp, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "token needed" {
			t.Errorf("denial body %q", body)
		}
	})

	t.Run("chat", func(t *testing.T) {
		a := dialWS(t, base+"/ws/chat/r1")
		defer a.Close()
		b := dialWS(t, base+"/ws/chat/r1")
		defer b.Close()
		// b joined after a; make sure the room has both before talking.
		deadline := time.Now().Add(10 * time.Second)
		for {
			a.WriteMessage(gws.TextMessage, []byte("ping"))
			if _, m, err := a.ReadMessage(); err != nil || string(m) != "ping" {
				t.Fatalf("a: %q %v", m, err)
			}
			b.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if _, m, err := b.ReadMessage(); err == nil && string(m) == "ping" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("b never got a's message")
			}
			b.Close()
			b = dialWS(t, base+"/ws/chat/r1") // a timed-out gorilla conn cannot be reused
		}
		b.SetReadDeadline(time.Now().Add(10 * time.Second))
		b.WriteMessage(gws.TextMessage, []byte("hello from b"))
		for _, conn := range []*gws.Conn{a, b} {
			if _, m, err := conn.ReadMessage(); err != nil || string(m) != "hello from b" {
				t.Errorf("broadcast: %q %v", m, err)
			}
		}
	})

	t.Run("app error", func(t *testing.T) {
		conn := dialWS(t, base+"/ws/echo")
		defer conn.Close()
		conn.WriteMessage(gws.TextMessage, []byte("boom"))
		_, _, err := conn.ReadMessage()
		var ce *gws.CloseError
		if !errors.As(err, &ce) || ce.Code != 1011 {
			t.Errorf("an app error must close with 1011, got %v", err)
		}
		c.WaitLog(t, "boom in a websocket", 10*time.Second)
		again := dialWS(t, base+"/ws/echo") // the worker still serves
		defer again.Close()
		again.WriteMessage(gws.TextMessage, []byte("still here"))
		if _, m, err := again.ReadMessage(); err != nil || string(m) != "still here" {
			t.Errorf("after an app error: %q %v", m, err)
		}
	})

	t.Run("200 at once on one worker", func(t *testing.T) {
		const n = 200
		conns := make([]*gws.Conn, n)
		for i := range conns {
			conns[i] = dialWS(t, base+"/ws/echo")
			defer conns[i].Close()
		}
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i, conn := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				msg := fmt.Sprintf("conn %d", i)
				for j := 0; j < 5; j++ {
					if err := conn.WriteMessage(gws.TextMessage, []byte(msg)); err != nil {
						errs <- err
						return
					}
					if _, m, err := conn.ReadMessage(); err != nil || string(m) != msg {
						errs <- fmt.Errorf("%s: got %q, %v", msg, m, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if pids := c.WorkerPids(); len(pids) != 1 {
			t.Errorf("want 1 worker, have %v", pids)
		}
	})
}

// TestASGIWebSocketHTTP2 opens a WebSocket over HTTP/2 (RFC 8441 extended CONNECT) with Go's
// HTTP/2 client. Caddy runs without GODEBUG: the module turns extended CONNECT on.
func TestASGIWebSocketHTTP2(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock("skip_install_trust", "local_certs")+`https://localhost:{HTTPS_PORT} {
	tls internal
	`+wsAppBlock+`
}
`)
	// x/net's HTTP/2 transport: net/http's refuses the :protocol pseudo-header.
	tr := &http2.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	url := fmt.Sprintf("https://127.0.0.1:%d", c.HTTPSPort)
	host := fmt.Sprintf("localhost:%d", c.HTTPSPort)
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequest("GET", url+"/state", nil)
		req.Host = host
		resp, err := cl.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("never ready: %v\n%s", err, tail(c.Logs(), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Trailers over HTTP/2 come in a trailing HEADERS frame.
	req, _ := http.NewRequest("GET", url+"/raw/", nil)
	req.Host = host
	if resp, err := cl.Do(req); err != nil {
		t.Errorf("GET /raw/ over h2: %v", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "part one, part two" || resp.Trailer.Get("X-Checksum") != "abc123" {
			t.Errorf("h2 trailers: body %q, trailer %v", body, resp.Trailer)
		}
	}

	open := func() (*websocket.Conn, *http.Response) {
		pr, pw := io.Pipe()
		req, _ := http.NewRequest(http.MethodConnect, url+"/ws/echo", pr)
		req.Host = host
		req.Header.Set(":protocol", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Protocol", "chat.v2")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("extended CONNECT: %v", err)
		}
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
			t.Fatalf("extended CONNECT: %s %d", resp.Proto, resp.StatusCode)
		}
		return websocket.NewClient(resp.Body, pw, nil, pw), resp
	}

	conn, resp := open()
	if resp.Header.Get("Sec-WebSocket-Protocol") != "chat.v2" {
		t.Errorf("subprotocol header %q", resp.Header.Get("Sec-WebSocket-Protocol"))
	}
	for _, msg := range []string{"over h2", strings.Repeat("x", 300<<10)} {
		if err := conn.WriteMessage(false, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if bin, got, err := conn.ReadMessage(); err != nil || bin || string(got) != msg {
			t.Fatalf("echo over h2 of %d bytes: %d bytes, %v", len(msg), len(got), err)
		}
	}
	conn.WriteMessage(false, []byte("scope"))
	_, raw, _ := conn.ReadMessage()
	if !strings.Contains(string(raw), `"scheme": "wss"`) && !strings.Contains(string(raw), `"scheme":"wss"`) || !strings.Contains(string(raw), `"http_version": "2"`) {
		t.Errorf("h2 scope: %s", raw)
	}
	conn.WriteMessage(false, []byte("close:4003:h2 bye"))
	_, _, err := conn.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4003 || ce.Reason != "h2 bye" {
		t.Errorf("server close over h2: %v", err)
	}
	conn.Close()

	conn, _ = open()
	conn.WriteClose(4004, "client h2 bye")
	_, _, err = conn.ReadMessage()
	if !errors.As(err, &ce) || ce.Code != 4004 {
		t.Errorf("close answer over h2: %v", err)
	}
	waitMarker(t, c, "closes", "4004 client h2 bye", 10*time.Second)
	conn.Close()
}

// TestASGIServerFastAPIExample is the "done when": the FastAPI example, with a
// WebSocket chat, served by one `caddy asgi-server` line with Uvicorn's flag spellings.
func TestASGIServerFastAPIExample(t *testing.T) {
	t.Parallel()
	c := ecoStart(t, "", nil, func(c *Caddy) []string {
		return []string{"asgi-server", "--venv", venvDir(), "--chdir", filepath.Join(repoRoot(), "examples", "fastapi"),
			"-w", "1", "--host", "127.0.0.1", "--port", fmt.Sprint(c.Port), "--admin", c.Admin, "main:app"}
	})
	if body := waitStatus(t, c.URL+"/", 200, 60*time.Second); !strings.Contains(string(body), "new WebSocket") {
		t.Errorf("GET /: %.300q", body)
	}
	_, body := get(t, c.URL+"/api/items/7?name=bolt")
	var item struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(body, &item); err != nil || item.ID != 7 || item.Name != "bolt" {
		t.Errorf("GET /api/items/7: %s (%v)", body, err)
	}
	// max_concurrency defaults to 1000 requests and WebSockets per worker.
	if p := mustPool(t, c, "main:app"); p.Threads != 1000 {
		t.Errorf("asgi pool: %d channels per worker, want the default 1000", p.Threads)
	}
	url := fmt.Sprintf("ws://127.0.0.1:%d/ws/chat", c.Port)
	a := dialWS(t, url)
	defer a.Close()
	b := dialWS(t, url)
	defer b.Close()
	// Both are in the room once b hears its own message.
	b.WriteMessage(gws.TextMessage, []byte("b joined"))
	for {
		_, m, err := b.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if string(m) == "b joined" {
			break
		}
	}
	a.WriteMessage(gws.TextMessage, []byte("hello from a"))
	for _, conn := range []*gws.Conn{a, b} {
		for {
			_, m, err := conn.ReadMessage()
			if err != nil {
				t.Fatalf("chat: %v", err)
			}
			if string(m) == "hello from a" {
				break
			}
		}
	}
}

// TestASGIWebSocketRestart: a rolling restart (admin API), and a reload that replaces the
// pool, close open WebSockets with 1012 (service restart) at once, instead of holding the
// old workers for graceful_timeout; the clients reconnect to the new workers.
func TestASGIWebSocketRestart(t *testing.T) {
	t.Parallel()
	site := func(greeting string) string {
		return globalBlock() + `http://127.0.0.1:{PORT} {
	asgi asgi_ws_app:app {
		python {VENV}/bin/python
		chdir {APPS}
		env MARKER_DIR {TMP}
		env GREETING ` + greeting + `
		workers 1
		name ws-restart
		graceful_timeout 60s
	}
}
`
	}
	c := startCaddy(t, site("one"))
	waitStatus(t, c.URL+"/state", 200, 60*time.Second)
	url := fmt.Sprintf("ws://127.0.0.1:%d/ws/echo", c.Port)

	expect1012 := func(conn *gws.Conn, what string, started time.Time) {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			_, _, err := conn.ReadMessage()
			if err == nil {
				continue
			}
			var ce *gws.CloseError
			if !errors.As(err, &ce) || ce.Code != 1012 {
				t.Errorf("%s: want close 1012, got %v", what, err)
			}
			if took := time.Since(started); took > 15*time.Second {
				t.Errorf("%s: the close came after %v (graceful_timeout is 60s)", what, took)
			}
			return
		}
	}

	conn := dialWS(t, url)
	conn.WriteMessage(gws.TextMessage, []byte("before"))
	conn.ReadMessage()
	start := time.Now()
	if code, body, err := adminDo(c, "POST", "/wsgi/pools/ws-restart/restart", nil); err != nil || code != 200 {
		t.Fatalf("restart: %d %v %s", code, err, body)
	}
	expect1012(conn, "rolling restart", start)
	conn.Close()
	waitMarker(t, c, "closes", "1012", 10*time.Second) // the app saw the client's answer

	again := dialWS(t, url)
	again.WriteMessage(gws.TextMessage, []byte("after"))
	if _, m, err := again.ReadMessage(); err != nil || string(m) != "after" {
		t.Fatalf("after the restart: %q %v", m, err)
	}
	start = time.Now()
	reloaded := make(chan error, 1)
	go func() { // a changed block: a new pool, the old one stops
		out, err := caddyReload(t, c, "Caddyfile.two", site("two"))
		if err != nil {
			err = fmt.Errorf("%v: %s", err, out)
		}
		reloaded <- err
	}()
	expect1012(again, "reload", start)
	if err := <-reloaded; err != nil {
		t.Errorf("caddy reload: %v", err)
	}
	again.Close()
}

// TestASGIWebSocketHTTP3 opens a WebSocket over HTTP/3 (RFC 9220, extended CONNECT on
// QUIC) with quic-go's HTTP/3 client; Caddy serves HTTP/3 on the HTTPS port.
func TestASGIWebSocketHTTP3(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock("skip_install_trust", "local_certs")+`https://localhost:{HTTPS_PORT} {
	tls internal
	`+wsAppBlock+`
}
`)
	waitStatus(t, fmt.Sprintf("http://127.0.0.1:%d/", c.Port), 308, 60*time.Second) // HTTP→HTTPS redirect: Caddy is up
	tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}}
	defer tr.Close()
	url := fmt.Sprintf("https://127.0.0.1:%d", c.HTTPSPort)
	host := fmt.Sprintf("localhost:%d", c.HTTPSPort)
	deadline := time.Now().Add(60 * time.Second)
	for { // the pool may still be booting
		req, _ := http.NewRequest("GET", url+"/state", nil)
		req.Host = host
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				if resp.ProtoMajor != 3 {
					t.Fatalf("not HTTP/3: %s", resp.Proto)
				}
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no HTTP/3 answer: %v\n%s", err, tail(c.Logs(), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodConnect, url+"/ws/echo", pr)
	req.Host = host
	req.Proto = "websocket" // quic-go's way of sending :protocol
	req.Header.Set("Sec-WebSocket-Version", "13")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("extended CONNECT over HTTP/3: %v", err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("extended CONNECT over HTTP/3: %d", resp.StatusCode)
	}
	conn := websocket.NewClient(resp.Body, pw, nil, pw)
	defer conn.Close()
	for _, msg := range []string{"over h3", strings.Repeat("q", 200<<10)} {
		if err := conn.WriteMessage(false, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := conn.ReadMessage(); err != nil || string(got) != msg {
			t.Fatalf("echo over h3 of %d bytes: %d bytes, %v", len(msg), len(got), err)
		}
	}
	conn.WriteMessage(false, []byte("close:4005:h3 bye"))
	_, _, err = conn.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4005 || ce.Reason != "h3 bye" {
		t.Errorf("server close over h3: %v", err)
	}
}
