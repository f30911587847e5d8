package protocol

import (
	"fmt"
	"net"
	"os"
	"sync"
)

const (
	readBufSize = 64 << 10
	// Buffers grown for a large frame are dropped afterwards, so an idle channel keeps
	// only readBufSize.
	keepBufSize = 1 << 20
	// bigBufSize is what the buffer grows to for a frame larger than readBufSize.
	bigBufSize = 256 << 10
	// socketBuffer is SO_SNDBUF for both ends: a 64 KiB block plus what follows it fit in
	// flight, so a streaming worker does not sleep on a full socket after every block
	// (Linux's default is 208 KiB). The kernel charges it only for bytes in flight.
	socketBuffer = 1 << 20
)

// Conn is Caddy's end of one worker channel: it reads frames (with any file descriptors
// the worker attached) and writes frames. Reads are done by one goroutine at a time;
// writes are serialised by a mutex because CANCEL may be sent from another goroutine.
type Conn struct {
	uc   *net.UnixConn
	buf  []byte
	r, w int
	oob  []byte

	fdMu sync.Mutex // fds and ring are touched by the reader and by Close
	fds  []int
	ring *Ring // the response ring, once the worker sent one

	wmu sync.Mutex
}

// NewConn wraps Caddy's end of a socketpair. It takes ownership of f.
func NewConn(f *os.File) (*Conn, error) {
	defer f.Close() // net.FileConn dups the descriptor
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("wrapping worker channel: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("worker channel is a %T, not a unix socket", c)
	}
	// The read buffer comes with the first read: an ASGI worker has up to thousands of
	// channels, most of them never used.
	return &Conn{uc: uc, oob: make([]byte, rightsSpace(8))}, nil
}

// Raw returns the underlying socket, for deadlines.
func (c *Conn) Raw() *net.UnixConn { return c.uc }

// ReadFrame returns the next frame. The payload aliases an internal buffer and is valid
// until the next call.
func (c *Conn) ReadFrame() (Type, []byte, error) {
	if c.buf == nil || cap(c.buf) > keepBufSize && c.r == c.w {
		c.buf, c.r, c.w = make([]byte, readBufSize), 0, 0
	}
	if err := c.fill(HeaderSize); err != nil {
		return 0, nil, err
	}
	t, n, err := ParseHeader(c.buf[c.r : c.r+HeaderSize])
	if err != nil {
		return 0, nil, err
	}
	if !knownFromWorker(t) {
		return 0, nil, violation("unknown frame type 0x%02x", byte(t))
	}
	if err := c.fill(HeaderSize + n); err != nil {
		return 0, nil, err
	}
	p := c.buf[c.r+HeaderSize : c.r+HeaderSize+n]
	c.r += HeaderSize + n
	return t, p, nil
}

// fill makes at least n unread bytes available in buf.
func (c *Conn) fill(n int) error {
	if c.w-c.r >= n {
		return nil
	}
	if c.r+n > len(c.buf) {
		// Move the unread tail to the front, growing the buffer for a large frame.
		nb := c.buf
		if n > len(c.buf) {
			// Room for a few more large frames too: a stream's blocks then come several
			// per recvmsg.
			nb = make([]byte, max(n, bigBufSize))
		}
		c.w = copy(nb, c.buf[c.r:c.w])
		c.r = 0
		c.buf = nb
	}
	for c.w-c.r < n {
		m, oobn, flags, _, err := c.uc.ReadMsgUnix(c.buf[c.w:], c.oob)
		if oobn > 0 {
			if perr := c.takeRights(c.oob[:oobn]); perr != nil {
				return perr
			}
		}
		if flags&msgCtrunc != 0 {
			return violation("too many file descriptors in one message")
		}
		if m > 0 { // m is -1 on some errors (a deadline): the stream must stay aligned
			c.w += m
		}
		if err != nil {
			return err
		}
		if m == 0 {
			return fmt.Errorf("worker channel closed: %w", os.ErrClosed)
		}
	}
	return nil
}

func (c *Conn) takeRights(oob []byte) error {
	fds, err := parseRights(oob)
	if err != nil {
		return violation("bad control message: %v", err)
	}
	c.fdMu.Lock()
	c.fds = append(c.fds, fds...)
	c.fdMu.Unlock()
	return nil
}

// TakeFile returns the oldest received descriptor as a file, for a FILE frame.
func (c *Conn) TakeFile(name string) (*os.File, error) {
	c.fdMu.Lock()
	defer c.fdMu.Unlock()
	if len(c.fds) == 0 {
		return nil, violation("FILE frame without a file descriptor")
	}
	fd := c.fds[0]
	c.fds = c.fds[1:]
	return os.NewFile(uintptr(fd), name), nil
}

// AttachRing maps the response ring of a RING frame (its memfd is the oldest received
// descriptor). A channel has at most one.
func (c *Conn) AttachRing(p []byte) error {
	shape, err := DecodeRing(p)
	if err != nil {
		return err
	}
	f, err := c.TakeFile("wsgi-ring")
	if err != nil {
		return err
	}
	r, err := MapRing(f, shape)
	if err != nil {
		return err
	}
	c.fdMu.Lock()
	defer c.fdMu.Unlock()
	if c.ring != nil {
		r.Close()
		return violation("a second RING frame on one channel")
	}
	c.ring = r
	return nil
}

// Inbound is the ring's inbound area, or nil: where a READ may be answered (DATA_RING).
// The worker reads it only until its next READ. It stays mapped while an exchange runs:
// a channel is closed only once its exchange has released it.
func (c *Conn) Inbound() []byte {
	c.fdMu.Lock()
	defer c.fdMu.Unlock()
	if c.ring == nil || len(c.ring.inbound) == 0 {
		return nil
	}
	return c.ring.inbound
}

// TakeRingBody returns the block of a RING_BODY frame; free(slot) must follow its last use.
func (c *Conn) TakeRingBody(p []byte) (b []byte, slot int, r *Ring, err error) {
	slot, n, err := DecodeRingBody(p)
	if err != nil {
		return nil, 0, nil, err
	}
	c.fdMu.Lock()
	r = c.ring
	c.fdMu.Unlock()
	if r == nil {
		return nil, 0, nil, violation("RING_BODY before RING")
	}
	b, err = r.Take(slot, n)
	return b, slot, r, err
}

// Write sends complete frames.
func (c *Conn) Write(frames []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.uc.Write(frames)
	return err
}

// Close closes the channel and any descriptors received but not taken.
func (c *Conn) Close() error {
	c.fdMu.Lock()
	for _, fd := range c.fds {
		closeFD(fd)
	}
	c.fds = nil
	if c.ring != nil {
		c.ring.Close() // blocks still queued for clients keep it mapped
		c.ring = nil
	}
	c.fdMu.Unlock()
	return c.uc.Close()
}

// Socketpair returns Caddy's end (wrapped) and the worker's end of a new channel.
func Socketpair() (*Conn, *os.File, error) {
	fds, err := socketpair()
	if err != nil {
		return nil, nil, fmt.Errorf("creating worker channel: %w", err)
	}
	for _, fd := range fds {
		setSendBuffer(fd, socketBuffer) // best effort
	}
	ours := os.NewFile(uintptr(fds[0]), "wsgi-channel")
	theirs := os.NewFile(uintptr(fds[1]), "wsgi-channel-worker")
	c, err := NewConn(ours)
	if err != nil {
		theirs.Close()
		return nil, nil, err
	}
	return c, theirs, nil
}
