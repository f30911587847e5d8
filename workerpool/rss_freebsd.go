package workerpool

import (
	"encoding/binary"
	"os"

	"golang.org/x/sys/unix"
)

// struct kinfo_proc from sysctl kern.proc.pid.<pid> (sys/user.h): its 64-bit layout is
// 1088 bytes, with ki_rssize (resident pages) at offset 264.
const (
	kinfoProcSize64 = 1088
	kinfoRSSOffset  = 264
)

// processRSS returns the resident memory of pid in bytes, 0 when unknown.
func processRSS(pid int) int64 {
	b, err := unix.SysctlRaw("kern.proc.pid", pid)
	if err != nil || len(b) != kinfoProcSize64 || binary.NativeEndian.Uint32(b) != kinfoProcSize64 {
		return 0 // gone, or a 32-bit layout
	}
	return int64(binary.NativeEndian.Uint64(b[kinfoRSSOffset:])) * int64(os.Getpagesize())
}
