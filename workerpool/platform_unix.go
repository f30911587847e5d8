//go:build unix

package workerpool

import "syscall"

// workerCred is the user and group workers run as.
type workerCred = syscall.Credential

// sigDump asks a worker to write every thread's stack to its dump pipe (faulthandler).
const sigDump = syscall.SIGUSR1

// kill signals a process, or a process group when pid is negative.
func kill(pid int, sig syscall.Signal) error { return syscall.Kill(pid, sig) }

// waitStatus decodes a wait status the zygote reported from waitpid.
func waitStatus(v uint32) syscall.WaitStatus { return syscall.WaitStatus(v) }

func unixRights(fds ...int) []byte { return syscall.UnixRights(fds...) }
