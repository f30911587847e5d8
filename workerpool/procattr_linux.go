package workerpool

import "syscall"

// sysProcAttr puts a worker in its own process group, with Pdeathsig so that it dies
// with Caddy even while its app is busy in a request.
func sysProcAttr(cred *workerCred) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
}
