package protocol

import (
	"errors"
	"os"
	"testing"
	"time"
)

// A read that times out leaves the stream where it was: the next frame reads whole.
func TestReadFrameAfterDeadline(t *testing.T) {
	c, peer, err := Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer peer.Close()
	c.Raw().SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := c.ReadFrame(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("want a deadline error, got %v", err)
	}
	c.Raw().SetReadDeadline(time.Now().Add(time.Second))
	peer.Write(AppendFrame(nil, TypeError, []byte("the client went away")))
	typ, p, err := c.ReadFrame()
	if err != nil || typ != TypeError || string(p) != "the client went away" {
		t.Fatalf("after a deadline: %v %x %q", err, typ, p)
	}
}
