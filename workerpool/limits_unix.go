//go:build unix && !darwin

package workerpool

import "syscall"

// hardFileLimit is the most open files a worker can raise its soft limit to.
func hardFileLimit() (uint64, bool) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, false
	}
	return uint64(lim.Max), true // int64 on FreeBSD
}
