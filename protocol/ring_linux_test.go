package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// workerRing makes a ring the way the Python runtime does (memfd, ftruncate, shared
// mapping) and returns the worker's mapping and the memfd.
func workerRing(t *testing.T, slots, slotSize int) ([]byte, *os.File) {
	t.Helper()
	return workerRingShape(t, RingShape{slots, slotSize, 0})
}

func workerRingShape(t *testing.T, shape RingShape) ([]byte, *os.File) {
	t.Helper()
	fd, err := unix.MemfdCreate("test-ring", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "test-ring")
	if err := f.Truncate(int64(shape.Size())); err != nil {
		t.Fatal(err)
	}
	mem, err := syscall.Mmap(fd, 0, shape.Size(), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Munmap(mem) })
	return mem, f
}

// fill puts data in a slot and marks it, as the worker does before its RING_BODY frame.
func fill(mem []byte, slot, slotSize int, data []byte) {
	copy(mem[RingControl+slot*slotSize:], data)
	binary.NativeEndian.PutUint32(mem[4*slot:], 1)
}

func TestRingOverAChannel(t *testing.T) {
	c, peer := pair(t)
	mem, f := workerRingShape(t, RingShape{4, 4096, 1000})
	ringFrame := AppendFrame(nil, TypeRing, binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 4), 4096), 1000))
	if _, _, err := peer.WriteMsgUnix(ringFrame, syscall.UnixRights(int(f.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	fill(mem, 2, 4096, []byte("hello ring"))
	if _, err := peer.Write(AppendFrame(nil, TypeRingBody, []byte{2, 0, 0, 0, 10})); err != nil {
		t.Fatal(err)
	}
	typ, p, err := c.ReadFrame()
	if err != nil || typ != TypeRing {
		t.Fatalf("%v %v", typ, err)
	}
	if err := c.AttachRing(p); err != nil {
		t.Fatal(err)
	}
	// Caddy's answer to a READ lands in the inbound area, where the worker reads it.
	in := c.Inbound()
	if len(in) != 1000 || cap(in) != 1000 {
		t.Fatalf("inbound area of %d bytes (cap %d), want 1000", len(in), cap(in))
	}
	copy(in, "request body")
	if got := string(mem[RingControl+4*4096:][:12]); got != "request body" {
		t.Fatalf("the worker sees %q in its inbound area", got)
	}
	typ, p, err = c.ReadFrame()
	if err != nil || typ != TypeRingBody {
		t.Fatalf("%v %v", typ, err)
	}
	b, slot, r, err := c.TakeRingBody(p)
	if err != nil || slot != 2 || string(b) != "hello ring" {
		t.Fatalf("slot %d %q %v", slot, b, err)
	}
	if _, _, _, err := c.TakeRingBody(p); !errors.Is(err, ErrProtocol) {
		t.Errorf("a slot taken twice: %v", err)
	}
	// The block outlives the channel: the mapping stays until the slot is freed.
	c.Close()
	if string(b) != "hello ring" {
		t.Fatalf("after Close: %q", b)
	}
	r.Free(slot)
	if binary.NativeEndian.Uint32(mem[8:]) != 0 {
		t.Error("Free did not clear the slot's state word for the worker")
	}
	if !r.unmapped() {
		t.Error("the ring is still mapped with the channel closed and no slot held")
	}
}

func TestRingRejectsBrokenWorkers(t *testing.T) {
	mem, f := workerRing(t, 4, 4096)
	r, err := MapRing(f, RingShape{4, 4096, 0})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, tc := range []struct {
		name       string
		slot, size int
	}{
		{"slot past the ring", 4, 10},
		{"empty block", 1, 0},
		{"block over the slot", 1, 4097},
		{"slot the worker did not fill", 1, 10},
	} {
		if _, err := r.Take(tc.slot, tc.size); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	fill(mem, 1, 4096, bytes.Repeat([]byte{7}, 4096))
	if b, err := r.Take(1, 4096); err != nil || len(b) != 4096 || cap(b) != 4096 {
		t.Fatalf("a full slot: %d %d %v", len(b), cap(b), err)
	}
	r.Free(1)

	// The ring's size must be what its frame says.
	_, f2 := workerRing(t, 4, 4096)
	if _, err := MapRing(f2, RingShape{8, 4096, 0}); !errors.Is(err, ErrProtocol) {
		t.Errorf("a ring smaller than announced: %v", err)
	}
	for _, p := range [][]byte{{0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0}, {0, 0, 0, 65, 0, 0, 16, 0, 0, 0, 0, 0},
		{0, 0, 0, 1, 0, 32, 0, 0, 0, 0, 0, 0}, {0, 0, 0, 1, 0, 0, 16, 0, 2, 0, 0, 0}, {0, 0, 0, 1, 0, 0, 16, 0}} {
		if _, err := DecodeRing(p); !errors.Is(err, ErrProtocol) {
			t.Errorf("RING payload %v: %v", p, err)
		}
	}
}
