//go:build linux || freebsd || netbsd || openbsd || dragonfly

package protocol

import "syscall"

// socketpair creates a channel whose ends are close-on-exec from the start, so a worker
// started concurrently never inherits another worker's channel.
func socketpair() ([2]int, error) {
	return syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
}
