package workerpool

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// hardFileLimit is the most open files a worker can raise its soft limit to: on macOS
// the hard limit is often "unlimited", but setrlimit refuses more than
// kern.maxfilesperproc.
func hardFileLimit() (uint64, bool) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, false
	}
	hard := lim.Max
	if perProc, err := unix.SysctlUint32("kern.maxfilesperproc"); err == nil && uint64(perProc) < hard {
		hard = uint64(perProc)
	}
	return hard, true
}
