package websocket

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
)

// pair returns a server and a client Conn over an in-memory connection.
func pair(t *testing.T, max int) (*Conn, *Conn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	server := newConn(bufio.NewReader(a), a, nil, a, false, max)
	client := NewClient(b, b, nil, b)
	return server, client, b
}

func TestRoundTripAndFragments(t *testing.T) {
	server, client, raw := pair(t, 0)
	go func() {
		client.WriteMessage(false, []byte("héllo"))
		client.WriteMessage(true, make([]byte, 70000)) // 64-bit length
		// A fragmented text message with a ping in between, masked by hand.
		writeRaw(raw, 0x01, []byte("ab"))
		writeRaw(raw, 0x89, []byte("p"))
		writeRaw(raw, 0x80, []byte("cd"))
		client.WriteClose(4000, "bye")
	}()
	bin, data, err := server.ReadMessage()
	if err != nil || bin || string(data) != "héllo" {
		t.Fatalf("text: %v %v %q", err, bin, data)
	}
	if bin, data, err = server.ReadMessage(); err != nil || !bin || len(data) != 70000 {
		t.Fatalf("binary: %v %v %d", err, bin, len(data))
	}
	done := make(chan error, 1)
	go func() { // the pong the server sends for the ping
		_, _, err := client.ReadMessage()
		done <- err
	}()
	if _, data, err = server.ReadMessage(); err != nil || string(data) != "abcd" {
		t.Fatalf("fragments: %v %q", err, data)
	}
	_, _, err = server.ReadMessage()
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 4000 || ce.Reason != "bye" {
		t.Fatalf("close: %v", err)
	}
	server.WriteClose(4000, "bye")
	if err := <-done; !errors.As(err, &ce) || ce.Code != 4000 {
		t.Fatalf("client saw %v", err)
	}
	if err := server.WriteMessage(false, []byte("late")); err != ErrClosed {
		t.Fatalf("write after close: %v", err)
	}
}

// writeRaw writes one masked client frame with the given first byte.
func writeRaw(c net.Conn, b0 byte, payload []byte) {
	key := [4]byte{1, 2, 3, 4}
	p := append([]byte(nil), payload...)
	maskBytes(key, p)
	c.Write(append([]byte{b0, 0x80 | byte(len(p)), 1, 2, 3, 4}, p...))
}

func TestProtocolErrors(t *testing.T) {
	cases := []struct {
		name  string
		frame func(net.Conn)
		code  int
	}{
		{"unmasked", func(c net.Conn) { c.Write([]byte{0x81, 0x01, 'x'}) }, CloseProtocolError},
		{"reserved bits", func(c net.Conn) { writeRaw(c, 0xC1, []byte("x")) }, CloseProtocolError},
		{"bad utf-8", func(c net.Conn) { writeRaw(c, 0x81, []byte{0xff, 0xfe}) }, CloseInvalidData},
		{"too big", func(c net.Conn) { writeRaw(c, 0x82, make([]byte, 100)) }, CloseTooBig},
		{"lone continuation", func(c net.Conn) { writeRaw(c, 0x80, []byte("x")) }, CloseProtocolError},
		{"bad close code", func(c net.Conn) { writeRaw(c, 0x88, []byte{0x03, 0xED}) }, CloseProtocolError},
		{"unknown opcode", func(c net.Conn) { writeRaw(c, 0x83, []byte("x")) }, CloseProtocolError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			server, _, raw := pair(t, 50)
			go tc.frame(raw)
			_, _, err := server.ReadMessage()
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.Code != tc.code {
				t.Fatalf("got %v, want close code %d", err, tc.code)
			}
		})
	}
}

func TestHandshakeChecks(t *testing.T) {
	r, _ := http.NewRequest("GET", "/ws", nil)
	r.Header.Set("Connection", "keep-alive, Upgrade")
	r.Header.Set("Upgrade", "WebSocket")
	if !IsUpgrade(r) {
		t.Fatal("an HTTP/1.1 upgrade is not recognised")
	}
	var he *HandshakeError
	if err := CheckRequest(r); !errors.As(err, &he) || he.Status != http.StatusUpgradeRequired {
		t.Fatalf("missing version: %v", err)
	}
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "short")
	if err := CheckRequest(r); !errors.As(err, &he) || he.Status != http.StatusBadRequest {
		t.Fatalf("bad key: %v", err)
	}
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	if err := CheckRequest(r); err != nil {
		t.Fatal(err)
	}
	// RFC 6455 §1.3's example.
	if got := AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("accept key %s", got)
	}
	c, _ := http.NewRequest("CONNECT", "/ws", nil)
	c.ProtoMajor = 2
	c.Header.Set(":protocol", "websocket")
	if !IsUpgrade(c) || !strings.Contains(c.Header.Get(":protocol"), "websocket") {
		t.Fatal("an RFC 8441 CONNECT is not recognised")
	}
}
