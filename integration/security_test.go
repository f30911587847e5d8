//go:build linux

package integration

// Security properties: worker channels are unnamed inherited socketpairs (nothing to connect
// to), workers drop to `user`/`group` before importing the app, `env_inherit` limits what
// leaks from Caddy's environment, X-Forwarded-* count only from trusted proxies, and
// Caddy's request_body limit answers 413 before any worker sees the request.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, body := get(t, url)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %.500s", url, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %.500s", url, err, body)
	}
}

// ---------------------------------------------------------------------------------------------
// channels: inherited socketpairs, no socket file, peer is caddy

type unixSock struct {
	path  string
	state string
	flags string
}

// procNetUnix maps socket inodes to their /proc/net/unix entry.
func procNetUnix(t *testing.T) map[string]unixSock {
	t.Helper()
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]unixSock{}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 7 {
			continue
		}
		s := unixSock{flags: f[3], state: f[5]}
		if len(f) >= 8 {
			s.path = f[7]
		}
		out[f[6]] = s
	}
	return out
}

// fdLinks maps fd number to its link target for pid.
func fdLinks(pid int) map[int]string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	out := map[int]string{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
			out[n] = l
		}
	}
	return out
}

// socketHolders maps every socket inode open in any process to the pids holding it.
func socketHolders() map[string][]int {
	out := map[string][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		seen := map[string]bool{}
		for _, l := range fdLinks(pid) {
			if strings.HasPrefix(l, "socket:[") && !seen[l] {
				seen[l] = true
				ino := strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")
				out[ino] = append(out[ino], pid)
			}
		}
	}
	return out
}

// socketFiles lists the socket files under root (depth-limited), by path.
func socketFiles(root string, depth int) map[string]bool {
	out := map[string]bool{}
	base := strings.Count(filepath.Clean(root), string(os.PathSeparator))
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() && strings.Count(p, string(os.PathSeparator))-base >= depth {
			return fs.SkipDir
		}
		if d.Type()&fs.ModeSocket != 0 {
			out[p] = true
		}
		return nil
	})
	return out
}

// peerPid returns SO_PEERCRED's pid of fd targetFd in process pid (via pidfd_getfd).
func peerPid(pid, targetFd int) (int, error) {
	const sysPidfdOpen, sysPidfdGetfd = 434, 438
	pidfd, _, e := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
	if e != 0 {
		return 0, fmt.Errorf("pidfd_open(%d): %v", pid, e)
	}
	defer syscall.Close(int(pidfd))
	fd, _, e := syscall.Syscall(sysPidfdGetfd, pidfd, uintptr(targetFd), 0)
	if e != 0 {
		return 0, fmt.Errorf("pidfd_getfd(%d, %d): %v", pid, targetFd, e)
	}
	defer syscall.Close(int(fd))
	cred, err := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	if err != nil {
		return 0, fmt.Errorf("SO_PEERCRED: %v", err)
	}
	return int(cred.Pid), nil
}

// ssPeers maps unix socket inodes to their peer's inode, from `ss -xpn` (nil if ss is missing).
func ssPeers() map[string]string {
	if _, err := exec.LookPath("ss"); err != nil {
		return nil
	}
	out, err := exec.Command("ss", "-xan").Output()
	if err != nil {
		return nil
	}
	peers := map[string]string{}
	for _, line := range strings.Split(string(out), "\n")[1:] {
		f := strings.Fields(line)
		// Netid State Recv-Q Send-Q Local-Address Port Peer-Address Port
		if len(f) >= 8 && f[0] == "u_str" {
			peers[f[5]] = f[7]
		}
	}
	return peers
}

func TestWorkerChannelsHaveNoPath(t *testing.T) {
	t.Parallel()
	before := socketFiles(os.TempDir(), 4)
	const threads = 2
	c := startCaddy(t, wsgiSite(localSite, "faults", "workers 2", fmt.Sprintf("threads %d", threads), "name chan"))
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	workers := c.waitWorkers(t, 2, 15*time.Second)
	time.Sleep(200 * time.Millisecond)

	unix := procNetUnix(t)
	holders := socketHolders()
	peers := ssPeers()
	caddyFds := fdLinks(c.Pid())
	caddySockets := map[string]bool{}
	for _, l := range caddyFds {
		if strings.HasPrefix(l, "socket:[") {
			caddySockets[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	for _, w := range workers {
		fds := fdLinks(w)
		var fdNums []int
		for n := range fds {
			fdNums = append(fdNums, n)
		}
		sort.Ints(fdNums)
		var desc []string
		for _, n := range fdNums {
			desc = append(desc, fmt.Sprintf("%d->%s", n, fds[n]))
		}
		t.Logf("worker %d fds: %s", w, strings.Join(desc, " "))
		for fd := 3; fd < 3+threads; fd++ {
			l := fds[fd]
			if !strings.HasPrefix(l, "socket:[") {
				t.Errorf("worker %d fd %d is %q, want an inherited socket (channel %d)", w, fd, l, fd-3)
				continue
			}
			if pp, err := peerPid(w, fd); err != nil {
				t.Errorf("worker %d fd %d: %v", w, fd, err)
			} else if pp != c.Pid() {
				t.Errorf("worker %d channel fd %d: peer credentials name pid %d, want caddy %d", w, fd, pp, c.Pid())
			}
		}
		if l := fds[3+threads]; !strings.HasPrefix(l, "pipe:[") {
			t.Errorf("worker %d fd %d is %q, want the stack-dump pipe", w, 3+threads, l)
		}
		for fd, l := range fds {
			switch {
			case strings.HasPrefix(l, "socket:["):
				ino := strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")
				s, ok := unix[ino]
				if !ok {
					t.Errorf("worker %d fd %d: socket %s is not a unix socket (a TCP/UDP socket in a worker?)", w, fd, ino)
					continue
				}
				if s.path != "" {
					t.Errorf("worker %d fd %d: unix socket %s is bound to %q; channels must have no name", w, fd, ino, s.path)
				}
				if s.state == "01" && s.flags == "00010000" {
					t.Errorf("worker %d fd %d: unix socket %s is listening", w, fd, ino)
				}
				if hs := holders[ino]; len(hs) != 1 || hs[0] != w {
					t.Errorf("worker %d fd %d: its channel socket %s is held by processes %v, want only the worker", w, fd, ino, hs)
				}
				if peers != nil {
					peer, ok := peers[ino]
					if !ok || peer == "*" || peer == "0" {
						t.Errorf("worker %d fd %d: ss shows no peer for socket %s", w, fd, ino)
					} else if !caddySockets[peer] {
						t.Errorf("worker %d fd %d: the peer %s of socket %s is not a socket of caddy", w, fd, peer, ino)
					} else if hs := holders[peer]; len(hs) != 1 || hs[0] != c.Pid() {
						t.Errorf("worker %d fd %d: the peer socket %s is held by %v, want only caddy %d", w, fd, peer, hs, c.Pid())
					}
				}
			case strings.HasPrefix(l, "pipe:["), strings.HasPrefix(l, "anon_inode:"), l == "/dev/null":
			case strings.HasPrefix(l, "/"):
				// regular files the interpreter opened (its own modules are closed after import)
			default:
				t.Errorf("worker %d fd %d: unexpected descriptor %q", w, fd, l)
			}
		}
		if fds[0] != "/dev/null" {
			t.Errorf("worker %d stdin is %q, want /dev/null", w, fds[0])
		}
	}
	// caddy's own unix sockets: none bound to a path, none listening
	for ino := range caddySockets {
		if s, ok := unix[ino]; ok {
			if s.path != "" {
				t.Errorf("caddy holds a unix socket bound to %q", s.path)
			}
			if s.flags == "00010000" {
				t.Errorf("caddy has a listening unix socket %s", ino)
			}
		}
	}
	if peers == nil {
		t.Logf("note: ss not found: the peer check relies on SO_PEERCRED only")
	}
	// no socket file appeared under the temp dir, nor in the test's own dirs
	after := socketFiles(os.TempDir(), 4)
	for p := range after {
		if !before[p] {
			t.Errorf("a socket file appeared during the test: %s", p)
		}
	}
	for _, dir := range []string{c.Dir, appsDir()} {
		if s := socketFiles(dir, 6); len(s) > 0 {
			t.Errorf("socket files under %s: %v", dir, s)
		}
	}
	checkLaterRequestsSucceed(t, c, 2)
}

// ---------------------------------------------------------------------------------------------
// user and group

const testUser = "caddywsgitest"

// worldPython finds a Python 3 interpreter that an unprivileged user can run (pyenv's under
// /root cannot be).
func worldPython(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"} {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue
		}
		ok := true
		for d := real; d != "/"; d = filepath.Dir(d) {
			st, err := os.Stat(d)
			if err != nil || st.Mode().Perm()&0o001 == 0 {
				ok = false
				break
			}
		}
		if ok {
			return p
		}
	}
	t.Fatalf("no Python 3 interpreter usable by an unprivileged user (tried /usr/bin/python3, /usr/local/bin/python3)")
	return ""
}

func ensureTestUser(t *testing.T) *user.User {
	t.Helper()
	u, err := user.Lookup(testUser)
	if err != nil {
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", testUser).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "already exists") {
			t.Fatalf("useradd %s: %v %s", testUser, err, out)
		}
		if u, err = user.Lookup(testUser); err != nil {
			t.Fatalf("user %s after useradd: %v", testUser, err)
		}
	}
	return u
}

type idsDoc struct {
	Pid    int   `json:"pid"`
	UID    int   `json:"uid"`
	GID    int   `json:"gid"`
	EUID   int   `json:"euid"`
	EGID   int   `json:"egid"`
	Groups []int `json:"groups"`
}

func procIDs(pid int) (uids, gids []string) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 5 && f[0] == "Uid:" {
			uids = f[1:5]
		}
		if len(f) >= 5 && f[0] == "Gid:" {
			gids = f[1:5]
		}
	}
	return
}

func TestWorkerUserGroup(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatalf("this test runs caddy as root to check that workers drop privileges; run it as root")
	}
	u := ensureTestUser(t)
	g, err := user.LookupGroup("nogroup")
	if err != nil {
		if g, err = user.LookupGroup("nobody"); err != nil {
			t.Fatalf("no nogroup/nobody group: %v", err)
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	primary, _ := strconv.Atoi(u.Gid)
	nogroup, _ := strconv.Atoi(g.Gid)
	python := worldPython(t)

	// the app in a directory the user can read; markers in one it can write
	dir, err := os.MkdirTemp("", "caddywsgi-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	src, err := os.ReadFile(filepath.Join(appsDir(), "faults.py"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "faults.py"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	markers := filepath.Join(dir, "markers")
	os.Mkdir(markers, 0o777)
	os.Chmod(markers, 0o777)

	block := func(extra ...string) string {
		return "\t\twsgi faults {\n\t\t\tpython " + python + "\n\t\t\tchdir " + dir + "\n\t\t\tenv MARKER_DIR " + markers +
			"\n\t\t\tworkers 1\n\t\t\t" + strings.Join(extra, "\n\t\t\t") + "\n\t\t}\n"
	}
	c := startCaddy(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	handle_path /both/* {
`+block("user "+testUser, "group "+g.Name, "name both")+`	}
	handle_path /user/* {
`+block("user "+testUser, "name useronly")+`	}
	handle_path /preload/* {
`+block("user "+testUser, "group "+g.Name, "preload", "name preloaded")+`	}
	handle_path /root/* {
`+block("name asroot")+`	}
}
`)
	cases := []struct {
		prefix   string
		uid, gid int
	}{
		{"/both", uid, nogroup},
		{"/user", uid, primary},
		{"/preload", uid, nogroup},
		{"/root", 0, 0},
	}
	for _, tc := range cases {
		waitStatus(t, c.URL+tc.prefix+"/pid", 200, 30*time.Second)
		var d idsDoc
		getJSON(t, c.URL+tc.prefix+"/ids", &d)
		t.Logf("%s: worker %d runs as uid %d gid %d euid %d egid %d groups %v", tc.prefix, d.Pid, d.UID, d.GID, d.EUID, d.EGID, d.Groups)
		if d.UID != tc.uid || d.EUID != tc.uid || d.GID != tc.gid || d.EGID != tc.gid {
			t.Errorf("%s: the app runs as uid %d/%d gid %d/%d, want uid %d gid %d", tc.prefix, d.UID, d.EUID, d.GID, d.EGID, tc.uid, tc.gid)
		}
		if tc.uid != 0 {
			for _, sg := range d.Groups {
				if sg != tc.gid {
					t.Errorf("%s: the worker kept supplementary groups %v (root's), want only %d", tc.prefix, d.Groups, tc.gid)
					break
				}
			}
		}
		// at import time already
		m, ok := waitFile(filepath.Join(markers, fmt.Sprintf("import-%d", d.Pid)), 5*time.Second)
		if !ok && tc.prefix == "/preload" {
			// the zygote (the worker's parent) imported it
			if ppid, _, okp := procStat(d.Pid); okp {
				m, ok = waitFile(filepath.Join(markers, fmt.Sprintf("import-%d", ppid)), 5*time.Second)
				if uids, _ := procIDs(ppid); len(uids) > 0 && uids[0] != strconv.Itoa(tc.uid) {
					t.Errorf("%s: the zygote %d runs as uid %v, want %d", tc.prefix, ppid, uids, tc.uid)
				}
			}
		}
		if !ok {
			t.Errorf("%s: no import marker for worker %d", tc.prefix, d.Pid)
		} else if f := strings.Fields(m); len(f) < 4 || f[0] != strconv.Itoa(tc.uid) || f[1] != strconv.Itoa(tc.gid) ||
			f[2] != strconv.Itoa(tc.uid) || f[3] != strconv.Itoa(tc.gid) {
			t.Errorf("%s: at import the app ran as %q (uid gid euid egid groups), want uid %d gid %d", tc.prefix, m, tc.uid, tc.gid)
		}
		// the kernel's view: real, effective, saved and fs ids
		uids, gids := procIDs(d.Pid)
		for _, v := range uids {
			if v != strconv.Itoa(tc.uid) {
				t.Errorf("%s: /proc/%d/status Uid %v, want all %d", tc.prefix, d.Pid, uids, tc.uid)
				break
			}
		}
		for _, v := range gids {
			if v != strconv.Itoa(tc.gid) {
				t.Errorf("%s: /proc/%d/status Gid %v, want all %d", tc.prefix, d.Pid, gids, tc.gid)
				break
			}
		}
	}
	// every python process under caddy (workers, zygote) runs as the configured user,
	// except the one pool without `user`
	var asroot []int
	for _, p := range c.WorkerPids() {
		if uids, _ := procIDs(p); len(uids) > 0 && uids[0] == "0" {
			asroot = append(asroot, p)
		}
	}
	if len(asroot) != 1 {
		t.Errorf("%d of caddy's children run as root (%v), want exactly 1 (the pool without user)", len(asroot), asroot)
	}
	// caddy itself keeps running as root
	if uids, _ := procIDs(c.Pid()); len(uids) == 0 || uids[0] != "0" {
		t.Errorf("caddy runs as %v", uids)
	}
}

// TestWorkerInheritsNoStrayFds: descriptors caddy itself inherited without close-on-exec
// (from a service manager, a shell, a test runner) must not reach the workers, which may
// run as another user: a worker holds its stdio, its channels and its dump pipe only.
//
// Not parallel: caddys started meanwhile by other tests would inherit the canaries.
func TestWorkerInheritsNoStrayFds(t *testing.T) {
	canaryPath := filepath.Join(t.TempDir(), "fd-canary")
	if err := os.WriteFile(canaryPath, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(canaryPath, syscall.O_RDONLY, 0) // no O_CLOEXEC: caddy inherits it
	if err != nil {
		t.Fatal(err)
	}
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0) // no SOCK_CLOEXEC
	if err != nil {
		t.Fatal(err)
	}
	c := startCaddy(t, wsgiSite(localSite, "faults", "workers 2", "threads 1"))
	syscall.Close(fd)
	syscall.Close(pair[0])
	defer syscall.Close(pair[1])
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	// Both workers must have booted (the runtime closes strays before importing the app):
	// a process that is still reading its runtime from stdin holds them for a moment.
	workers := waitPool(t, c, "faults", 15*time.Second, "2 ready workers", func(p *wsgiPool) bool { return len(p.Workers) == 2 }).pids()

	canaryHeld := false
	for _, l := range fdLinks(c.Pid()) {
		if l == canaryPath {
			canaryHeld = true
		}
	}
	if !canaryHeld {
		t.Logf("note: caddy did not inherit the canary descriptor")
	}
	for _, w := range workers {
		for n, l := range fdLinks(w) {
			if l == canaryPath {
				t.Errorf("worker %d holds fd %d on %s, a descriptor caddy inherited from its parent", w, n, l)
			}
			if n > 3+1 && !strings.HasPrefix(l, "/") {
				// beyond stdio, the channel (fd 3) and the dump pipe (fd 4): only the
				// runtime's own high duplicates are expected
				t.Errorf("worker %d holds fd %d -> %s, not one of its own descriptors", w, n, l)
			}
		}
	}
}

// ---------------------------------------------------------------------------------------------
// environment

func TestWorkerEnvInherit(t *testing.T) {
	t.Parallel()
	rb := make([]byte, 8)
	rand.Read(rb)
	secret := "s3cret-" + hex.EncodeToString(rb)
	c := startCaddyEnv(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	handle_path /default/* {
		wsgi faults {
			python {PYTHON}
			chdir {APPS}
			workers 1
			env GIVEN_VAR given-default
		}
	}
	handle_path /off/* {
		wsgi faults {
			python {PYTHON}
			chdir {APPS}
			workers 1
			env_inherit off
			env GIVEN_VAR given-off
		}
	}
	handle_path /named/* {
		wsgi faults {
			python {PYTHON}
			chdir {APPS}
			workers 1
			env_inherit CADDY_TEST_OTHER
			env GIVEN_VAR given-named
		}
	}
	handle_path /venvoff/* {
		wsgi faults {
			venv {VENV}
			chdir {APPS}
			workers 1
			env_inherit off
			env GIVEN_VAR given-venv
		}
	}
}
`, "CADDY_TEST_SECRET_TOKEN="+secret, "CADDY_TEST_OTHER=other-value", "LANG=C.UTF-8", "TZ=UTC", "TMPDIR=/tmp")

	envOf := func(prefix string) map[string]string {
		waitStatus(t, c.URL+prefix+"/pid", 200, 30*time.Second)
		var d struct {
			Env map[string]string `json:"env"`
		}
		getJSON(t, c.URL+prefix+"/env", &d)
		return d.Env
	}
	basics := map[string]bool{"PATH": true, "HOME": true, "LANG": true, "LC_ALL": true, "LC_CTYPE": true, "TZ": true, "TMPDIR": true}

	def := envOf("/default")
	if def["CADDY_TEST_SECRET_TOKEN"] != secret || def["CADDY_TEST_OTHER"] != "other-value" || def["GIVEN_VAR"] != "given-default" {
		t.Errorf("default (inherit everything): secret %q other %q given %q", def["CADDY_TEST_SECRET_TOKEN"], def["CADDY_TEST_OTHER"], def["GIVEN_VAR"])
	}
	if def["XDG_CONFIG_HOME"] == "" {
		t.Errorf("default: caddy's XDG_CONFIG_HOME was not inherited")
	}

	check := func(prefix string, env map[string]string, allowed map[string]bool, given string) {
		t.Helper()
		if _, ok := env["CADDY_TEST_SECRET_TOKEN"]; ok {
			t.Errorf("%s: the secret in caddy's environment reached the app", prefix)
		}
		if env["GIVEN_VAR"] != given {
			t.Errorf("%s: GIVEN_VAR %q, want %q (env is added after env_inherit)", prefix, env["GIVEN_VAR"], given)
		}
		for _, k := range []string{"PATH", "HOME", "LANG", "TZ", "TMPDIR"} {
			if env[k] == "" {
				t.Errorf("%s: basic variable %s missing", prefix, k)
			}
		}
		if env["LANG"] != "" && env["LANG"] != "C.UTF-8" || env["TZ"] != "" && env["TZ"] != "UTC" {
			t.Errorf("%s: LANG %q TZ %q, want caddy's C.UTF-8 and UTC", prefix, env["LANG"], env["TZ"])
		}
		var extra []string
		for k := range env {
			if !basics[k] && !allowed[k] && k != "GIVEN_VAR" {
				extra = append(extra, k)
			}
		}
		sort.Strings(extra)
		if len(extra) > 0 {
			t.Errorf("%s: variables beyond the basics, the named ones and env: %v", prefix, extra)
		}
	}
	off := envOf("/off")
	check("/off", off, nil, "given-off")
	named := envOf("/named")
	check("/named", named, map[string]bool{"CADDY_TEST_OTHER": true}, "given-named")
	if named["CADDY_TEST_OTHER"] != "other-value" {
		t.Errorf("/named: CADDY_TEST_OTHER %q, want other-value", named["CADDY_TEST_OTHER"])
	}
	venv := envOf("/venvoff")
	check("/venvoff", venv, map[string]bool{"VIRTUAL_ENV": true}, "given-venv")
	if venv["VIRTUAL_ENV"] != venvDir() {
		t.Errorf("/venvoff: VIRTUAL_ENV %q, want %q", venv["VIRTUAL_ENV"], venvDir())
	}
	if !strings.HasPrefix(venv["PATH"], filepath.Join(venvDir(), "bin")+":") {
		t.Errorf("/venvoff: PATH %q does not start with the venv's bin", venv["PATH"])
	}
	// the config is rejected when env_inherit is given nothing, or off with names
	for _, bad := range []string{"env_inherit", "env_inherit off FOO"} {
		dir := t.TempDir()
		cf := filepath.Join(dir, "Caddyfile")
		os.WriteFile(cf, []byte("http://127.0.0.1:1 {\n\twsgi faults {\n\t\t"+bad+"\n\t}\n}\n"), 0o644)
		if out, err := runCaddyCmd(t, dir, "adapt", "--config", cf, "--adapter", "caddyfile"); err == nil {
			t.Errorf("`%s` was accepted: %.300s", bad, out)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// X-Forwarded-* and the client address follow trusted_proxies

func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	for _, trusted := range []bool{false, true} {
		trusted := trusted
		t.Run(fmt.Sprintf("trusted=%v", trusted), func(t *testing.T) {
			t.Parallel()
			global := globalBlock()
			if trusted {
				global = globalBlock("servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}")
			}
			c := startCaddy(t, global+`
http://127.0.0.1:{PORT} {
	wsgi probe {
		python {PYTHON}
		chdir {APPS}
		workers 1
	}
}
`)
			waitStatus(t, c.URL+"/", 200, 20*time.Second)
			resp, body := do(t, "GET", c.URL+"/", map[string]string{
				"X-Forwarded-For":   "203.0.113.7",
				"X-Forwarded-Proto": "https",
			}, nil)
			d := parseProbe(t, resp, body)
			t.Logf("REMOTE_ADDR %q REMOTE_PORT %q url_scheme %q HTTPS %q", d.Env["REMOTE_ADDR"], d.Env["REMOTE_PORT"], d.WSGI.URLScheme, d.Env["HTTPS"])
			if trusted {
				if d.Env["REMOTE_ADDR"] != "203.0.113.7" {
					t.Errorf("trusted proxy 127.0.0.1 sent X-Forwarded-For 203.0.113.7: REMOTE_ADDR %q", d.Env["REMOTE_ADDR"])
				}
				if d.WSGI.URLScheme != "https" {
					t.Errorf("trusted proxy sent X-Forwarded-Proto https: wsgi.url_scheme %q", d.WSGI.URLScheme)
				}
				if p := d.Env["REMOTE_PORT"]; p != "" {
					t.Errorf("REMOTE_PORT %q set although REMOTE_ADDR is not the peer", p)
				}
			} else {
				if d.Env["REMOTE_ADDR"] != "127.0.0.1" {
					t.Errorf("untrusted client set REMOTE_ADDR to %q with X-Forwarded-For", d.Env["REMOTE_ADDR"])
				}
				if d.WSGI.URLScheme != "http" {
					t.Errorf("untrusted client set wsgi.url_scheme to %q with X-Forwarded-Proto", d.WSGI.URLScheme)
				}
				if d.Env["HTTPS"] != "" && d.Env["HTTPS"] != "off" {
					t.Errorf("untrusted client: HTTPS=%q", d.Env["HTTPS"])
				}
				if d.Env["REMOTE_PORT"] == "" {
					t.Errorf("REMOTE_PORT missing for a direct client")
				}
			}
			// without the headers: the peer, plain http, in both cases
			resp, body = do(t, "GET", c.URL+"/", nil, nil)
			d = parseProbe(t, resp, body)
			if d.Env["REMOTE_ADDR"] != "127.0.0.1" || d.WSGI.URLScheme != "http" {
				t.Errorf("no forwarding headers: REMOTE_ADDR %q url_scheme %q", d.Env["REMOTE_ADDR"], d.WSGI.URLScheme)
			}
		})
	}
}

// ---------------------------------------------------------------------------------------------
// request_body max_size: 413 before a worker is involved

// rawPost sends head+body on a new connection (the body from a goroutine, so that an early
// answer is read even if the server stops reading) and returns the response status.
func rawPost(t *testing.T, c *Caddy, head string, body []byte) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.Port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		if _, err := io.WriteString(conn, head); err == nil {
			conn.Write(body)
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: "POST"})
	if err != nil {
		return 0, err.Error()
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

func TestRequestBodyMaxSize(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	request_body {
		max_size 1KB
	}
	wsgi faults {
		python {PYTHON}
		chdir {APPS}
		env MARKER_DIR {TMP}
		workers 1
	}
}
`)
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	cases := []struct {
		name    string
		size    int
		chunked bool
		want    int
	}{
		{"content-length_500", 500, false, 200},
		{"chunked_500", 500, true, 200},
		{"content-length_4KiB", 4096, false, 413},
		{"chunked_4KiB", 4096, true, 413},
		{"content-length_2MiB", 2 << 20, false, 413},
		{"chunked_2MiB_over_buffer_body", 2 << 20, true, 413},
	}
	for _, tc := range cases {
		id := token("rb")
		body := bytes.Repeat([]byte("b"), tc.size)
		head := "POST /reached?id=" + id + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
		if tc.chunked {
			head += "Transfer-Encoding: chunked\r\n\r\n"
			body = []byte(chunked(body, 700))
		} else {
			head += "Content-Length: " + strconv.Itoa(tc.size) + "\r\n\r\n"
		}
		code, resp := rawPost(t, c, head, body)
		if code != tc.want {
			t.Errorf("%s: status %d %.200q, want %d", tc.name, code, resp, tc.want)
		}
		_, reached := waitFile(filepath.Join(c.Dir, "reached-"+id), 300*time.Millisecond)
		if tc.want == 413 && reached {
			t.Errorf("%s: the app was called for a body over request_body max_size (413 must come before a worker is involved)", tc.name)
		}
		if tc.want == 200 {
			if !reached {
				t.Errorf("%s: the app was not called for a body within the limit", tc.name)
			}
			if !strings.Contains(resp, fmt.Sprintf(`"len": %d`, tc.size)) {
				t.Errorf("%s: the app read %q, want len %d", tc.name, resp, tc.size)
			}
		}
	}
	if mp := mustPool(t, c, "faults"); mp.BusyThreads != 0 {
		t.Errorf("busy_threads %d after the 413s", mp.BusyThreads)
	}
	checkLaterRequestsSucceed(t, c, 2)
}
