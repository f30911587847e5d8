//go:build linux

package integration

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
)

// TestASGIWebSocketLimitsAndCompression: max_message_size is inclusive (a 16 MiB message
// passes with the default, one byte more closes with 1009; likewise with 1KiB), messages
// over one channel frame reach the app and come back whole, and permessage-deflate is
// negotiated with a real client (gorilla/websocket) unless websocket_compression is off.
func TestASGIWebSocketLimitsAndCompression(t *testing.T) {
	t.Parallel()
	echo := func(extra string) string {
		return `asgi asgi_echo:app {
			python {VENV}/bin/python
			chdir {APPS}
			workers 1
			` + extra + `
		}`
	}
	c := startCaddy(t, globalBlock()+`http://127.0.0.1:{PORT} {
	handle_path /small/* {
		`+echo("max_message_size 1KiB\n\t\t\twebsocket_compression off")+`
	}
	handle {
		`+echo("")+`
	}
}
`)
	base := "ws" + strings.TrimPrefix(c.URL, "http")
	dial := func(path string, compress bool) (*gws.Conn, *http.Response) {
		d := gws.Dialer{HandshakeTimeout: 10 * time.Second, EnableCompression: compress}
		conn, resp, err := d.Dial(base+path, nil)
		if err != nil {
			t.Fatalf("dial %s: %v", path, err)
		}
		conn.SetReadLimit(64 << 20)
		conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		t.Cleanup(func() { conn.Close() })
		return conn, resp
	}
	roundTrip := func(conn *gws.Conn, kind int, msg []byte) {
		t.Helper()
		if err := conn.WriteMessage(kind, msg); err != nil {
			t.Fatal(err)
		}
		k, got, err := conn.ReadMessage()
		if err != nil || k != kind || !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes: kind %d, %d bytes, %v\n%s", len(msg), k, len(got), err, tail(c.Logs(), 20))
		}
	}
	tooBig := func(conn *gws.Conn, n int) {
		t.Helper()
		conn.WriteMessage(gws.BinaryMessage, make([]byte, n))
		_, _, err := conn.ReadMessage()
		var ce *gws.CloseError
		if !errors.As(err, &ce) || ce.Code != gws.CloseMessageTooBig {
			t.Fatalf("%d bytes: got %v, want close 1009", n, err)
		}
	}

	conn, resp := dial("/", false)
	big := bytes.Repeat([]byte("0123456789abcdef€"), (16<<20)/19)
	big = append(big, bytes.Repeat([]byte("z"), 16<<20-len(big))...)
	roundTrip(conn, gws.TextMessage, big) // exactly 16 MiB of text, split between characters
	roundTrip(conn, gws.BinaryMessage, bytes.Repeat([]byte{1}, 16<<20))
	tooBig(conn, 16<<20+1)
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		t.Errorf("no offer, yet extensions %q", ext)
	}

	conn, resp = dial("/", true)
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(ext, "permessage-deflate") {
		t.Fatalf("compression not negotiated: %q", ext)
	}
	conn.EnableWriteCompression(true)
	for i := 0; i < 20; i++ {
		roundTrip(conn, gws.TextMessage, []byte(strings.Repeat("compress me ", 100+i)))
	}
	roundTrip(conn, gws.TextMessage, []byte("short"))

	conn, resp = dial("/small/", true)
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		t.Errorf("websocket_compression off, yet extensions %q", ext)
	}
	roundTrip(conn, gws.BinaryMessage, make([]byte, 1024))
	tooBig(conn, 1025)
}
