package workerpool

import "syscall"

// Windows builds compile so that a Caddy with this plugin among others still builds; the
// Caddy module refuses to provision there (no socketpairs, fork or signals), so none of
// this runs.

type workerCred struct {
	Uid, Gid uint32
	Groups   []uint32
}

const sigDump = syscall.Signal(-1)

func kill(int, syscall.Signal) error { return syscall.EWINDOWS }

func waitStatus(v uint32) syscall.WaitStatus { return syscall.WaitStatus{ExitCode: v} }

func unixRights(...int) []byte { return nil }

func sysProcAttr(*workerCred) *syscall.SysProcAttr { return nil }

func hardFileLimit() (uint64, bool) { return 0, false }
