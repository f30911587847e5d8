package protocol

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

// Ring is Caddy's view of a worker channel's ring (PROTOCOL.md, "Rings"): shared memory
// the worker copies large response blocks into, so a block crosses to Caddy with one copy
// and no socket buffer and is written to the client from there, and into whose inbound
// area Caddy reads request body bytes that answer a READ. The first RingControl bytes hold
// one u32 state word per slot (non-zero: the worker filled it and Caddy has not freed it);
// the slots follow, then the inbound area.
//
// The mapping lives as long as the channel and every block still queued for a client:
// the channel holds one reference and each taken slot one more.
type Ring struct {
	mem      []byte
	slots    int
	slotSize int
	inbound  []byte        // where DATA_RING bytes go: written only between a READ and its answer
	held     atomic.Uint64 // slots taken and not freed: a worker reusing one is broken
	refs     atomic.Int64
	unmap    func([]byte) error
}

// RingControl is the size of the state words' page at the start of a ring.
const RingControl = 4096

// Ring limits: a RING frame asking for more is a protocol violation.
const (
	maxRingSlots    = 64 // the held mask is a u64
	maxRingSlotSize = 1 << 20
	maxRingInbound  = MaxPayload
)

func newRing(mem []byte, slots, slotSize int, unmap func([]byte) error) *Ring {
	end := RingControl + slots*slotSize
	r := &Ring{mem: mem, slots: slots, slotSize: slotSize, inbound: mem[end:len(mem):len(mem)], unmap: unmap}
	r.refs.Store(1)
	return r
}

// RingShape is what a RING frame announces.
type RingShape struct {
	Slots, SlotSize, Inbound int
}

// Size is the size of the shared memory a ring of this shape needs.
func (s RingShape) Size() int { return RingControl + s.Slots*s.SlotSize + s.Inbound }

// DecodeRing parses a RING payload: u32 slot count, u32 slot size, u32 inbound size.
func DecodeRing(p []byte) (RingShape, error) {
	if len(p) != 12 {
		return RingShape{}, violation("ring payload of %d bytes, want 12", len(p))
	}
	s := RingShape{int(binary.BigEndian.Uint32(p)), int(binary.BigEndian.Uint32(p[4:])), int(binary.BigEndian.Uint32(p[8:]))}
	if s.Slots < 1 || s.Slots > maxRingSlots || s.SlotSize < 1 || s.SlotSize > maxRingSlotSize || s.Inbound > maxRingInbound {
		return RingShape{}, violation("ring of %d slots of %d bytes and %d inbound is out of bounds", s.Slots, s.SlotSize, s.Inbound)
	}
	return s, nil
}

// DecodeRingBody parses a RING_BODY payload: u8 slot, u32 length.
func DecodeRingBody(p []byte) (slot, n int, err error) {
	if len(p) != 5 {
		return 0, 0, violation("ring body payload of %d bytes, want 5", len(p))
	}
	return int(p[0]), int(binary.BigEndian.Uint32(p[1:])), nil
}

// Take returns the n bytes the worker put in a slot; the caller must Free it exactly
// once, after its last use of the bytes. They stay valid until then, even if the channel
// closes.
func (r *Ring) Take(slot, n int) ([]byte, error) {
	if slot >= r.slots || n < 1 || n > r.slotSize {
		return nil, violation("ring body of %d bytes in slot %d of %d×%d", n, slot, r.slots, r.slotSize)
	}
	if atomic.LoadUint32(r.state(slot)) == 0 {
		return nil, violation("ring body in slot %d, which the worker did not fill", slot)
	}
	bit := uint64(1) << slot
	if r.held.Or(bit)&bit != 0 {
		return nil, violation("ring slot %d reused before Caddy freed it", slot)
	}
	r.refs.Add(1)
	off := RingControl + slot*r.slotSize
	return r.mem[off : off+n : off+n], nil
}

// Free gives a slot back to the worker.
func (r *Ring) Free(slot int) {
	r.held.And(^(uint64(1) << slot))
	// Our last read of the slot happened before this store (the write to the client has
	// returned); the worker reads the word before it writes the slot again.
	atomic.StoreUint32(r.state(slot), 0)
	r.release()
}

// Close drops the channel's reference; the memory is unmapped once no slot is held.
func (r *Ring) Close() { r.release() }

func (r *Ring) release() {
	if r.refs.Add(-1) == 0 {
		r.unmap(r.mem)
	}
}

// unmapped reports whether the memory was given back (for tests).
func (r *Ring) unmapped() bool { return r.refs.Load() == 0 }

func (r *Ring) state(slot int) *uint32 {
	return (*uint32)(unsafe.Pointer(&r.mem[4*slot]))
}
