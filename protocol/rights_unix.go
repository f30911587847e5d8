//go:build unix

package protocol

import "syscall"

// msgCtrunc is the recvmsg flag for control data cut short (descriptors dropped).
const msgCtrunc = syscall.MSG_CTRUNC

// rightsSpace is the control buffer size for n descriptors in one message.
func rightsSpace(n int) int { return syscall.CmsgSpace(4 * n) }

// parseRights returns the descriptors in a control message, marked close-on-exec so no
// later child inherits them.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var out []int
	for i := range msgs {
		fds, err := syscall.ParseUnixRights(&msgs[i])
		if err != nil {
			continue // not SCM_RIGHTS
		}
		for _, fd := range fds {
			syscall.CloseOnExec(fd)
		}
		out = append(out, fds...)
	}
	return out, nil
}

func closeFD(fd int) { syscall.Close(fd) }

// socketpairFcntl is socketpair for systems without SOCK_CLOEXEC (macOS): ForkLock keeps
// a concurrent fork+exec from inheriting the descriptors before they are marked, as Go's
// net package does. Linux builds use it only in tests.
func socketpairFcntl() ([2]int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return fds, err
	}
	syscall.CloseOnExec(fds[0])
	syscall.CloseOnExec(fds[1])
	return fds, nil
}

func setSendBuffer(fd, n int) { syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, n) }
