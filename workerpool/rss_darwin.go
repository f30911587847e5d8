package workerpool

import (
	"encoding/binary"
	"syscall"
	"unsafe"
)

// proc_info(2) is the system call behind libproc's proc_pidinfo, which needs cgo; the
// constants and struct proc_taskinfo (96 bytes, pti_resident_size second) come from
// XNU's sys/proc_info.h.
const (
	procInfoCallPIDInfo = 2
	procPIDTaskInfo     = 4
	procTaskInfoSize    = 96
)

// processRSS returns the resident memory of pid in bytes, 0 when unknown.
func processRSS(pid int) int64 {
	var info [procTaskInfoSize]byte
	n, _, errno := syscall.Syscall6(syscall.SYS_PROC_INFO, procInfoCallPIDInfo, uintptr(pid),
		procPIDTaskInfo, 0, uintptr(unsafe.Pointer(&info[0])), procTaskInfoSize)
	if errno != 0 || n != procTaskInfoSize {
		return 0
	}
	return int64(binary.NativeEndian.Uint64(info[8:16]))
}
