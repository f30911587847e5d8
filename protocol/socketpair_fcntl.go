//go:build unix && !(linux || freebsd || netbsd || openbsd || dragonfly)

package protocol

// socketpair: these systems (macOS among them) have no SOCK_CLOEXEC.
func socketpair() ([2]int, error) { return socketpairFcntl() }
