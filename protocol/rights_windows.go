package protocol

import (
	"errors"
	"syscall"
)

// Windows builds compile so that a Caddy with this plugin among others still builds; the
// handlers refuse to provision there, so none of this runs.

var errNoSocketpair = errors.New("worker channels need a Unix-like system")

const msgCtrunc = 0

func rightsSpace(int) int { return 0 }

func parseRights([]byte) ([]int, error) { return nil, errNoSocketpair }

func closeFD(fd int) { syscall.CloseHandle(syscall.Handle(fd)) }

func socketpair() ([2]int, error) { return [2]int{-1, -1}, errNoSocketpair }

func setSendBuffer(int, int) {}
