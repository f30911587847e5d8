//go:build unix && !linux

package workerpool

import "syscall"

// sysProcAttr puts a worker in its own process group. There is no Pdeathsig here: a
// worker whose Caddy dies sees EOF on its channels, and the runtime also watches its
// parent process, so a worker busy in a request goes too (pyruntime/caddy_wsgi/platform.py,
// watch_parent).
func sysProcAttr(cred *workerCred) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}
