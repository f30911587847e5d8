package protocol

import (
	"net"
	"testing"
)

// FuzzConnReadFrame feeds arbitrary bytes, as a broken or hostile worker would send
// them, through the real socket reader and every payload decoder. It must never panic
// or read out of bounds; every failure must be a clean error.
func FuzzConnReadFrame(f *testing.F) {
	f.Add(AppendFrame(nil, TypeHeaders, headersPayload(HeadersFinal, "200 OK\x00A\x00b", "hi")))
	f.Add(AppendFrame(nil, TypeRead, []byte{0, 0, 16, 0}))
	f.Add(AppendFrame(nil, TypeFile, make([]byte, 16)))
	f.Add(AppendFrame(nil, TypeLog, []byte("\x02boom")))
	f.Add(AppendFrame(AppendFrame(nil, TypeBody, []byte("x")), TypeEnd, nil))
	f.Add(AppendFrame(nil, TypeRing, []byte{0, 0, 0, 32, 0, 1, 0, 0, 0, 4, 0, 0}))
	f.Add(AppendFrame(nil, TypeRingBody, []byte{3, 0, 1, 0, 0}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x10})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, theirs, err := Socketpair()
		if err != nil {
			t.Skip("no socketpair")
		}
		defer c.Close()
		fc, err := net.FileConn(theirs)
		theirs.Close()
		if err != nil {
			t.Fatal(err)
		}
		go func() { fc.Write(data); fc.Close() }()
		for {
			typ, p, err := c.ReadFrame()
			if err != nil {
				return
			}
			switch typ {
			case TypeHeaders:
				DecodeHeaders(p)
			case TypeRead:
				DecodeRead(p)
			case TypeFile:
				DecodeFile(p)
				c.TakeFile("fuzz")
			case TypeLog:
				DecodeLog(p)
			case TypeRing:
				c.AttachRing(p) // no descriptor came with it: refused
			case TypeRingBody:
				c.TakeRingBody(p) // no ring: refused
			}
			DecodeRequest(p)
		}
	})
}
