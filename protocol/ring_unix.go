//go:build unix

package protocol

import (
	"fmt"
	"os"
	"syscall"
)

// MapRing maps the ring a worker passed with a RING frame. f is closed: the mapping
// keeps the memory.
func MapRing(f *os.File, shape RingShape) (*Ring, error) {
	defer f.Close()
	size := shape.Size()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("response ring: %w", err)
	}
	if st.Size() != int64(size) {
		return nil, violation("ring of %d bytes, want %d for %+v", st.Size(), size, shape)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping the response ring: %w", err)
	}
	return newRing(mem, shape.Slots, shape.SlotSize, syscall.Munmap), nil
}
