//go:build unix

package protocol

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestConnReceivesFileDescriptor(t *testing.T) {
	c, peer := pair(t)
	f, err := os.CreateTemp(t.TempDir(), "fd")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("payload")
	payload := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, 3), ^uint64(0))
	frame := AppendFrame(nil, TypeFile, payload)
	if _, _, err := peer.WriteMsgUnix(frame, syscall.UnixRights(int(f.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	typ, p, err := c.ReadFrame()
	if err != nil || typ != TypeFile {
		t.Fatalf("%v %v", typ, err)
	}
	fr, err := DecodeFile(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.TakeFile("x")
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	got.Seek(fr.Offset, io.SeekStart)
	b, _ := io.ReadAll(got)
	if string(b) != "load" {
		t.Fatalf("read %q through the passed descriptor", b)
	}
	if _, err := c.TakeFile("x"); !errors.Is(err, ErrProtocol) {
		t.Fatal("a second TakeFile must fail: only one descriptor was sent")
	}
}

// TestSocketpairFcntl runs the macOS path (no SOCK_CLOEXEC) on every Unix: both ends are
// close-on-exec, and a child started right after does not inherit them, while it does
// inherit a socketpair made without the flag (the control).
func TestSocketpairFcntl(t *testing.T) {
	fds, err := socketpairFcntl()
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD(fds[0])
	defer closeFD(fds[1])
	leak, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD(leak[0])
	defer closeFD(leak[1])
	for _, fd := range fds {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil {
			t.Fatal(err)
		}
		if flags&unix.FD_CLOEXEC == 0 {
			t.Fatalf("fd %d is not close-on-exec", fd)
		}
	}
	out, err := exec.Command("ls", "/dev/fd/").Output() // the child's own descriptors
	if err != nil {
		t.Fatal(err)
	}
	inherited := map[string]bool{}
	for _, name := range strings.Fields(string(out)) {
		inherited[name] = true
	}
	if !inherited[strconv.Itoa(leak[0])] {
		t.Fatalf("the control descriptor %d was not seen in the child (%q): the check is blind", leak[0], out)
	}
	for _, fd := range fds {
		if inherited[strconv.Itoa(fd)] {
			t.Fatalf("the child inherited fd %d", fd)
		}
	}
	if _, err := syscall.Write(fds[0], []byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if n, err := syscall.Read(fds[1], buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
}
