package websocket

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestNegotiateDeflate(t *testing.T) {
	cases := []struct{ offer, want string }{
		{"permessage-deflate", "permessage-deflate"},
		{"permessage-deflate; client_max_window_bits", "permessage-deflate"},
		{"permessage-deflate; client_max_window_bits=10", "permessage-deflate; client_max_window_bits=10"},
		{"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
		{"permessage-deflate; server_max_window_bits=9", "permessage-deflate; server_max_window_bits=9"},
		// Declined offers fall through to the next one.
		{"permessage-deflate; server_max_window_bits=7, permessage-deflate", "permessage-deflate"},
		{"permessage-deflate; server_max_window_bits", ""},
		{"permessage-deflate; client_max_window_bits=16", ""},
		{"permessage-deflate; server_no_context_takeover=1", ""},
		{"permessage-deflate; server_no_context_takeover; server_no_context_takeover", ""},
		{"permessage-deflate; foo", ""},
		{"x-webkit-deflate-frame", ""},
	}
	for _, c := range cases {
		h := http.Header{"Sec-Websocket-Extensions": {c.offer}}
		p, ok := negotiateDeflate(h)
		if got := p.response; got != c.want || ok != (c.want != "") {
			t.Errorf("offer %q: answer %q (ok %v), want %q", c.offer, got, ok, c.want)
		}
	}
}

// deflatePair is a server and a client that both compress, with the given offer.
func deflatePair(t *testing.T, offer string, max int) (*Conn, *Conn) {
	t.Helper()
	p, ok := negotiateDeflate(http.Header{"Sec-Websocket-Extensions": {offer}})
	if !ok {
		t.Fatalf("offer %q declined", offer)
	}
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	server := newConn(bufio.NewReader(a), a, nil, a, false, max)
	client := NewClient(b, b, nil, b)
	// The client compresses with the server's rules reversed.
	cp := deflateParams{serverNoTakeover: p.clientNoTakeover, clientNoTakeover: p.serverNoTakeover, serverBits: p.clientBits, clientBits: p.serverBits}
	server.deflate, server.inflate = newDeflater(p), newInflater(p)
	client.deflate, client.inflate = newDeflater(cp), newInflater(cp)
	return server, client
}

// TestDeflateRoundTrip sends repetitive messages both ways under each offer: with context
// takeover the later ones shrink, and every message arrives intact.
func TestDeflateRoundTrip(t *testing.T) {
	for _, offer := range []string{
		"permessage-deflate",
		"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
		"permessage-deflate; server_max_window_bits=8; client_max_window_bits=9",
	} {
		server, client := deflatePair(t, offer, 0)
		msgs := [][]byte{[]byte(strings.Repeat("hello compressed world ", 200)), []byte("tiny"), {}, bytes.Repeat([]byte{7}, 100000)}
		go func() {
			for _, m := range msgs {
				client.WriteMessage(true, m)
			}
			// A fragmented compressed message.
			client.WriteFragment(false, []byte(strings.Repeat("part one ", 50)), false)
			client.WriteFragment(false, []byte(strings.Repeat("part two ", 50)), true)
		}()
		for i, m := range msgs {
			_, got, err := server.ReadMessage()
			if err != nil || !bytes.Equal(got, m) {
				t.Fatalf("%s: message %d: %v (%d bytes, want %d)", offer, i, err, len(got), len(m))
			}
			go server.WriteMessage(true, got)
			if _, back, err := client.ReadMessage(); err != nil || !bytes.Equal(back, m) {
				t.Fatalf("%s: echo %d: %v", offer, i, err)
			}
		}
		if _, got, err := server.ReadMessage(); err != nil || string(got) != strings.Repeat("part one ", 50)+strings.Repeat("part two ", 50) {
			t.Fatalf("%s: fragmented: %v %q", offer, err, got)
		}
	}
}

// TestDeflateBomb: the limit applies to the decompressed size.
func TestDeflateBomb(t *testing.T) {
	server, client := deflatePair(t, "permessage-deflate", 1000)
	go client.WriteMessage(true, make([]byte, 1001))
	_, _, err := server.ReadMessage()
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Code != CloseTooBig {
		t.Fatalf("got %v, want 1009", err)
	}
}

func TestValidPrefix(t *testing.T) {
	euro := []byte("€") // E2 82 AC
	for _, c := range []struct {
		b    []byte
		fin  bool
		want int
	}{
		{euro[:2], false, 0}, {euro[:2], true, -1}, {euro, true, 3},
		{[]byte{'a', 0xED, 0xA0}, false, -1}, // a surrogate
		{[]byte{'a', 0xF4, 0x90}, false, -1}, // over U+10FFFF
		{[]byte{0xC0}, false, -1},
		{[]byte("ok\xf0\x9f"), false, 2},
	} {
		if got := validPrefix(c.b, 0, c.fin); got != c.want {
			t.Errorf("validPrefix(%x, fin %v) = %d, want %d", c.b, c.fin, got, c.want)
		}
	}
}
