package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"testing"
)

func TestRequestWriterRoundTrip(t *testing.T) {
	var w RequestWriter
	for _, tc := range []struct {
		flags byte
		pairs [][2]string
		body  []byte
	}{
		{0, [][2]string{{"REQUEST_METHOD", "GET"}, {"PATH_INFO", "/caf\xc3\xa9"}, {"QUERY_STRING", ""}}, nil},
		{RequestStream, [][2]string{{"A", "1"}}, nil},
		{0, [][2]string{{"CONTENT_LENGTH", "5"}}, []byte("hello")},
		{0, nil, []byte("body only")},
	} {
		w.Begin(tc.flags)
		for _, p := range tc.pairs {
			w.Add(p[0], p[1])
		}
		frame, err := w.Finish(tc.body)
		if err != nil {
			t.Fatal(err)
		}
		typ, n, err := ParseHeader(frame)
		if err != nil || typ != TypeRequest || n != len(frame)-HeaderSize {
			t.Fatalf("header: type %v len %d err %v", typ, n, err)
		}
		flags, env, body, err := DecodeRequest(frame[HeaderSize:])
		if err != nil {
			t.Fatal(err)
		}
		if flags != tc.flags || !bytes.Equal(body, tc.body) || len(env) != len(tc.pairs) {
			t.Fatalf("got flags %d env %v body %q", flags, env, body)
		}
		for i := range env {
			if env[i] != tc.pairs[i] {
				t.Fatalf("pair %d: got %q want %q", i, env[i], tc.pairs[i])
			}
		}
	}
}

func TestAppendValueJoinsParts(t *testing.T) {
	var w RequestWriter
	w.Begin(0)
	w.Add("HTTP_X_FOO", "a")
	w.AppendValue(",")
	w.AppendValue("b")
	w.Add("K", "v")
	frame, _ := w.Finish(nil)
	_, env, _, err := DecodeRequest(frame[HeaderSize:])
	if err != nil || env[0] != [2]string{"HTTP_X_FOO", "a,b"} || env[1] != [2]string{"K", "v"} {
		t.Fatalf("got %v, %v", env, err)
	}
}

func headersPayload(flags byte, block string, body string) []byte {
	p := []byte{flags}
	p = binary.BigEndian.AppendUint32(p, uint32(len(block)))
	return append(append(p, block...), body...)
}

func TestDecodeHeaders(t *testing.T) {
	h, err := DecodeHeaders(headersPayload(HeadersFinal, "200 OK\x00Content-Type\x00text/plain\x00X-A\x00", "hi"))
	if err != nil {
		t.Fatal(err)
	}
	if !h.Final || h.Status != "200 OK" || len(h.Fields) != 4 || h.Fields[1] != "text/plain" || h.Fields[3] != "" || string(h.Body) != "hi" {
		t.Fatalf("got %+v", h)
	}
	h, err = DecodeHeaders(headersPayload(0, "204 No Content", ""))
	if err != nil || h.Status != "204 No Content" || len(h.Fields) != 0 || h.Final {
		t.Fatalf("got %+v %v", h, err)
	}
	for _, bad := range [][]byte{
		{0, 0, 0},
		headersPayload(0, "200 OK\x00Name-Without-Value", ""),
		append([]byte{0}, 0xff, 0xff, 0xff, 0xff),
	} {
		if _, err := DecodeHeaders(bad); !errors.Is(err, ErrProtocol) {
			t.Errorf("DecodeHeaders(%q) = %v, want a protocol error", bad, err)
		}
	}
}

func TestDecodeSmallFrames(t *testing.T) {
	if n, err := DecodeRead([]byte{0, 1, 0, 0}); err != nil || n != 65536 {
		t.Fatalf("read: %d %v", n, err)
	}
	if _, err := DecodeRead([]byte{0, 0, 0, 0}); !errors.Is(err, ErrProtocol) {
		t.Fatal("a READ of zero bytes must be rejected")
	}
	f, err := DecodeFile(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, 10), ^uint64(0)))
	if err != nil || f.Offset != 10 || f.Count != -1 {
		t.Fatalf("file: %+v %v", f, err)
	}
	if _, err := DecodeFile(make([]byte, 15)); !errors.Is(err, ErrProtocol) {
		t.Fatal("short FILE payload must be rejected")
	}
	if lvl, text, err := DecodeLog([]byte("\x01careful")); err != nil || lvl != 1 || text != "careful" {
		t.Fatalf("log: %d %q %v", lvl, text, err)
	}
	if _, _, err := DecodeLog([]byte{9}); !errors.Is(err, ErrProtocol) {
		t.Fatal("bad log level must be rejected")
	}
	d := DataFrame(nil, DataEOF, []byte("xy"))
	if !bytes.Equal(d, []byte{0, 0, 0, 3, byte(TypeData), DataEOF, 'x', 'y'}) {
		t.Fatalf("data frame %v", d)
	}
}

func TestParseHeaderLimit(t *testing.T) {
	h := AppendHeader(nil, TypeBody, MaxPayload+1)
	if _, _, err := ParseHeader(h); !errors.Is(err, ErrProtocol) {
		t.Fatal("oversized frame must be rejected")
	}
}

// pair returns both ends of a real socketpair: ours wrapped as a Conn, theirs raw.
func pair(t *testing.T) (*Conn, *net.UnixConn) {
	t.Helper()
	c, theirs, err := Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	fc, err := net.FileConn(theirs)
	theirs.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); fc.Close() })
	return c, fc.(*net.UnixConn)
}

func TestConnReadsFramesAcrossWrites(t *testing.T) {
	c, peer := pair(t)
	big := bytes.Repeat([]byte("z"), 300<<10) // larger than the read buffer
	var stream []byte
	stream = AppendFrame(stream, TypeBody, []byte("first"))
	stream = AppendFrame(stream, TypeBody, big)
	stream = AppendFrame(stream, TypeEnd, nil)
	go func() {
		for i := 0; i < len(stream); i += 7777 {
			peer.Write(stream[i:min(i+7777, len(stream))])
		}
	}()
	for _, want := range [][]byte{[]byte("first"), big, {}} {
		_, p, err := c.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p, want) {
			t.Fatalf("payload of %d bytes, want %d", len(p), len(want))
		}
	}
	peer.Close()
	if _, _, err := c.ReadFrame(); err == nil {
		t.Fatal("want an error at EOF")
	}
}

func TestConnRejectsUnknownType(t *testing.T) {
	c, peer := pair(t)
	peer.Write(AppendFrame(nil, Type(0x7f), []byte("x")))
	if _, _, err := c.ReadFrame(); !errors.Is(err, ErrProtocol) {
		t.Fatalf("got %v, want a protocol error", err)
	}
}
