package gateway

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-wsgi/caddy-wsgi/protocol"
	"golang.org/x/sys/unix"
)

const testSlot = 64 << 10

// testRing is a response ring as a worker makes it, mapped on both sides.
type testRing struct {
	worker []byte // the worker's mapping
	caddy  *protocol.Ring
	slots  int
}

func newTestRing(t *testing.T, slots int) *testRing {
	t.Helper()
	shape := protocol.RingShape{Slots: slots, SlotSize: testSlot}
	size := shape.Size()
	fd, err := unix.MemfdCreate("test-ring", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "test-ring")
	if err := f.Truncate(int64(size)); err != nil {
		t.Fatal(err)
	}
	mem, err := syscall.Mmap(fd, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Munmap(mem) })
	r, err := protocol.MapRing(f, shape)
	if err != nil {
		t.Fatal(err)
	}
	return &testRing{worker: mem, caddy: r, slots: slots}
}

// put fills a free slot with b, as the worker does -> the slot, or -1 if all are held.
func (tr *testRing) put(b []byte) int {
	for i := 0; i < tr.slots; i++ {
		if binary.NativeEndian.Uint32(tr.worker[4*i:]) == 0 {
			copy(tr.worker[protocol.RingControl+i*testSlot:], b)
			binary.NativeEndian.PutUint32(tr.worker[4*i:], 1)
			return i
		}
	}
	return -1
}

func (tr *testRing) held() int {
	n := 0
	for i := 0; i < tr.slots; i++ {
		if binary.NativeEndian.Uint32(tr.worker[4*i:]) != 0 {
			n++
		}
	}
	return n
}

// pushRingBlocks pushes n 64 KiB blocks through the ring (block i holds byte i).
func pushRingBlocks(t *testing.T, p *pump, tr *testRing, n int) []byte {
	t.Helper()
	var want []byte
	for i := 0; i < n; i++ {
		b := bytes.Repeat([]byte{byte(i)}, testSlot)
		want = append(want, b...)
		slot := tr.put(b)
		if slot < 0 {
			t.Fatalf("block %d: every ring slot is held (the pump keeps %d)", i, tr.held())
		}
		data, err := tr.caddy.Take(slot, len(b))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.pushRing(data, tr.caddy, slot); err != nil {
			return want
		}
	}
	return want
}

// Ring blocks reach a client that keeps up in order, and every slot is given back.
func TestPumpRingBlocksFreeTheirSlots(t *testing.T) {
	tr := newTestRing(t, 32)
	g := &gateWriter{open: make(chan struct{}), h: http.Header{}, delay: time.Millisecond}
	p := newPump(g, nil)
	p.stall, p.spillAfter = 500*time.Millisecond, 10*time.Second
	close(g.open)
	want := pushRingBlocks(t, p, tr, 100) // 6.25 MiB through 2 MiB of slots
	p.close()
	if err := p.wait(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.buf.Bytes(), want) {
		t.Fatalf("got %d bytes, want %d (or out of order)", g.buf.Len(), len(want))
	}
	if n := tr.held(); n != 0 {
		t.Errorf("%d slots still held after the response", n)
	}
	if p.spill != nil {
		t.Error("a client that kept up made the pump spill")
	}
}

// A client that takes nothing never holds more than pumpMemory of slots: the rest is
// copied to the spill file and its slots freed at once, so the worker goes on.
func TestPumpRingSlowClientGivesSlotsBack(t *testing.T) {
	tr := newTestRing(t, 32)
	g := &gateWriter{open: make(chan struct{}), h: http.Header{}}
	p := newPump(g, nil)
	p.stall = 20 * time.Millisecond
	want := pushRingBlocks(t, p, tr, 80)
	if n := tr.held(); n > pumpMemory/testSlot+1 {
		t.Errorf("a client that reads nothing holds %d slots", n)
	}
	if p.spill == nil {
		t.Error("a client that took nothing did not make the pump spill")
	}
	close(g.open)
	p.close()
	if err := p.wait(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.buf.Bytes(), want) {
		t.Fatalf("got %d bytes, want %d (or out of order)", g.buf.Len(), len(want))
	}
	if n := tr.held(); n != 0 {
		t.Errorf("%d slots still held after the response", n)
	}
}

// failWriter fails every Write once open is closed: a client gone while blocks wait.
type failWriter struct {
	h    http.Header
	open chan struct{}
}

func (f failWriter) Header() http.Header         { return f.h }
func (failWriter) WriteHeader(int)               {}
func (f failWriter) Write(p []byte) (int, error) { <-f.open; return 0, errors.New("client gone") }
func (failWriter) FlushError() error             { return nil }

// A client that fails frees the slots queued for it and every one pushed after.
func TestPumpRingFailedClientFreesSlots(t *testing.T) {
	tr := newTestRing(t, 32)
	fw := failWriter{h: http.Header{}, open: make(chan struct{})}
	p := newPump(fw, nil)
	pushRingBlocks(t, p, tr, 10) // queued in memory
	close(fw.open)
	pushRingBlocks(t, p, tr, 30) // pushed while or after the client fails
	p.close()
	if err := p.wait(); err == nil {
		t.Fatal("the pump reported no error for a failed client")
	}
	if n := tr.held(); n != 0 {
		t.Errorf("%d slots still held after the client failed", n)
	}
}
