//go:build linux

package integration

// Test harness shared by every integration test (also used by the examples' tests).
//
// Placeholders replaced by startCaddy in a Caddyfile:
//
//	{PORT} {HTTPS_PORT}  free loopback ports for http_port / https_port
//	{ADMIN}              host:port of the admin endpoint (127.0.0.1:<free port>)
//	{REPO}               absolute path of the repository root
//	{APPS}               absolute path of integration/testdata/apps
//	{PYTHON}             python3 found on PATH (resolved to its real interpreter)
//	{VENV_PYTHON}        venvPython(t), resolved only when the placeholder is used
//	{VENV}               the venv directory, resolved only when the placeholder is used
//	{TMP}                a per-test temporary directory (t.TempDir())

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------------------------
// Binaries and interpreters

var (
	buildOnce   sync.Once
	builtCaddy  string
	buildErrMsg string
)

// caddyBinary returns $CADDY_BIN when set, else a caddy built once per test process by
// scripts/build-caddy.sh. A build failure fails the calling test with the build output.
func caddyBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CADDY_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatalf("CADDY_BIN=%q: %v", p, err)
		}
		if _, err := os.Stat(abs); err != nil {
			t.Fatalf("CADDY_BIN=%q: %v", p, err)
		}
		return abs
	}
	buildOnce.Do(func() {
		// One shared directory; each test process builds caddy-<pid> there and removes the
		// binaries of processes that are gone, so runs do not pile up binaries in /tmp.
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("caddy-wsgi-itest-%d", os.Getuid()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			buildErrMsg = err.Error()
			return
		}
		if old, _ := filepath.Glob(filepath.Join(dir, "caddy-*")); len(old) > 0 {
			for _, f := range old {
				if pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(f), "caddy-")); err == nil && !pidAlive(pid) {
					os.Remove(f)
				}
			}
		}
		out := filepath.Join(dir, fmt.Sprintf("caddy-%d", os.Getpid()))
		cmd := exec.Command(filepath.Join(repoRoot(), "scripts", "build-caddy.sh"), out)
		cmd.Dir = repoRoot()
		b, err := cmd.CombinedOutput()
		if err != nil {
			buildErrMsg = fmt.Sprintf("scripts/build-caddy.sh failed: %v\n%s", err, b)
			return
		}
		builtCaddy = out
	})
	if builtCaddy == "" {
		t.Fatalf("cannot build caddy: %s", buildErrMsg)
	}
	return builtCaddy
}

// repoRoot returns the absolute path of the repository root.
func repoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if ok && filepath.IsAbs(file) {
		return filepath.Dir(filepath.Dir(file))
	}
	wd, _ := os.Getwd()
	return filepath.Dir(wd)
}

// appsDir is integration/testdata/apps.
func appsDir() string { return filepath.Join(repoRoot(), "integration", "testdata", "apps") }

// venvDir is $WSGI_TEST_VENV, default <repo>/.venv.
func venvDir() string {
	if v := os.Getenv("WSGI_TEST_VENV"); v != "" {
		abs, err := filepath.Abs(v)
		if err == nil {
			return abs
		}
		return v
	}
	return filepath.Join(repoRoot(), ".venv")
}

// venvPython returns <venv>/bin/python, failing the test when it does not exist.
func venvPython(t testing.TB) string {
	t.Helper()
	p := filepath.Join(venvDir(), "bin", "python")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("test venv interpreter %s not found (%v): create it with `python3 -m venv %s && %s -m pip install -r requirements-test.txt`, or point WSGI_TEST_VENV at one",
			p, err, venvDir(), p)
	}
	return p
}

// extraPythons returns $WSGI_TEST_PYTHONS (space separated) or the pyenv 3.9 and 3.13
// interpreters; the test fails when neither 3.9 nor 3.13 is available.
func extraPythons(t testing.TB) []string {
	t.Helper()
	if v := strings.TrimSpace(os.Getenv("WSGI_TEST_PYTHONS")); v != "" {
		ps := strings.Fields(v)
		for _, p := range ps {
			if _, err := os.Stat(p); err != nil {
				if _, err2 := exec.LookPath(p); err2 != nil {
					t.Fatalf("WSGI_TEST_PYTHONS entry %q: %v", p, err)
				}
			}
		}
		return ps
	}
	var out []string
	for _, pat := range []string{"/root/.pyenv/versions/3.9*/bin/python3", "/root/.pyenv/versions/3.13*/bin/python3"} {
		m, _ := filepath.Glob(pat)
		sort.Strings(m)
		if len(m) > 0 {
			out = append(out, m[len(m)-1])
		}
	}
	if len(out) == 0 {
		t.Fatalf("no Python 3.9 or 3.13 interpreter found under /root/.pyenv/versions; set WSGI_TEST_PYTHONS")
	}
	return out
}

var (
	sysPythonOnce sync.Once
	sysPython     string
	sysPythonErr  error
)

// systemPython is python3 from PATH, resolved to the real interpreter (sys.executable) so
// that a pyenv shim does not sit between caddy and the worker.
func systemPython(t testing.TB) string {
	t.Helper()
	sysPythonOnce.Do(func() {
		p, err := exec.LookPath("python3")
		if err != nil {
			sysPythonErr = fmt.Errorf("python3 not on PATH: %v", err)
			return
		}
		out, err := exec.Command(p, "-c", "import sys; print(sys.executable)").Output()
		if err == nil && strings.TrimSpace(string(out)) != "" {
			sysPython = strings.TrimSpace(string(out))
		} else {
			sysPython, _ = filepath.Abs(p)
		}
	})
	if sysPythonErr != nil {
		t.Fatal(sysPythonErr)
	}
	return sysPython
}

// ---------------------------------------------------------------------------------------------
// Ports

var (
	portMu   sync.Mutex
	usedPort = map[int]bool{}
)

// freePort returns a loopback TCP port that was free a moment ago and that this process has
// not handed out before.
func freePort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		portMu.Lock()
		if !usedPort[p] {
			usedPort[p] = true
			portMu.Unlock()
			return p
		}
		portMu.Unlock()
	}
	t.Fatal("no free port")
	return 0
}

// ---------------------------------------------------------------------------------------------
// Caddy process

// lockedBuffer is a thread-safe bytes.Buffer.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Caddy is a running caddy process started by startCaddy.
type Caddy struct {
	Port, HTTPSPort, AdminPort int
	URL, HTTPSURL, AdminURL    string
	Admin                      string // host:port of the admin endpoint
	Cmd                        *exec.Cmd
	ConfigPath                 string
	Dir                        string // per-test temp dir ({TMP})
	Env                        []string

	logs     *lockedBuffer
	done     chan struct{} // closed when the process has been waited for
	waitErr  error
	stopOnce sync.Once
}

// globalBlock is the global options block every test Caddyfile starts with; extra lines
// (e.g. "skip_install_trust") are added inside it.
func globalBlock(extra ...string) string {
	var b strings.Builder
	b.WriteString("{\n\tadmin {ADMIN}\n\thttp_port {PORT}\n\thttps_port {HTTPS_PORT}\n")
	for _, e := range extra {
		b.WriteString("\t" + e + "\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// withGlobal prepends globalBlock() to a Caddyfile body.
func withGlobal(body string) string { return globalBlock() + body }

// expandPlaceholders replaces the harness placeholders in s.
func (c *Caddy) expandPlaceholders(t testing.TB, s string) string {
	t.Helper()
	pairs := []string{
		"{PORT}", strconv.Itoa(c.Port),
		"{HTTPS_PORT}", strconv.Itoa(c.HTTPSPort),
		"{ADMIN}", c.Admin,
		"{REPO}", repoRoot(),
		"{APPS}", appsDir(),
		"{TMP}", c.Dir,
	}
	if strings.Contains(s, "{PYTHON}") {
		pairs = append(pairs, "{PYTHON}", systemPython(t))
	}
	if strings.Contains(s, "{VENV_PYTHON}") {
		pairs = append(pairs, "{VENV_PYTHON}", venvPython(t))
	}
	if strings.Contains(s, "{VENV}") {
		venvPython(t)
		pairs = append(pairs, "{VENV}", venvDir())
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// newCaddy allocates ports and a directory without starting anything.
func newCaddy(t *testing.T) *Caddy {
	t.Helper()
	c := &Caddy{
		Port:      freePort(t),
		HTTPSPort: freePort(t),
		AdminPort: freePort(t),
		Dir:       t.TempDir(),
		logs:      &lockedBuffer{},
		done:      make(chan struct{}),
	}
	c.Admin = fmt.Sprintf("127.0.0.1:%d", c.AdminPort)
	c.URL = fmt.Sprintf("http://127.0.0.1:%d", c.Port)
	c.HTTPSURL = fmt.Sprintf("https://127.0.0.1:%d", c.HTTPSPort)
	c.AdminURL = "http://" + c.Admin
	c.Env = append(os.Environ(),
		"XDG_DATA_HOME="+filepath.Join(c.Dir, "xdg-data"),
		"XDG_CONFIG_HOME="+filepath.Join(c.Dir, "xdg-config"),
		"HOME="+c.Dir,
	)
	return c
}

// startCaddy writes caddyfile (placeholders expanded) to a temp dir, runs
// `caddy run --config <file> --adapter caddyfile`, and waits until the admin endpoint answers
// and the HTTP port accepts connections. Cleanup stops caddy and dumps its log on failure.
func startCaddy(t *testing.T, caddyfile string) *Caddy {
	t.Helper()
	return startCaddyEnv(t, caddyfile)
}

// startCaddyEnv is startCaddy with extra KEY=VALUE variables for the caddy process (and
// so for the workers that inherit them); {PORT} in a value is expanded.
func startCaddyEnv(t *testing.T, caddyfile string, env ...string) *Caddy {
	t.Helper()
	c := newCaddy(t)
	for _, kv := range env {
		c.Env = append(c.Env, strings.ReplaceAll(kv, "{PORT}", strconv.Itoa(c.Port)))
	}
	c.ConfigPath = filepath.Join(c.Dir, "Caddyfile")
	cf := c.expandPlaceholders(t, caddyfile)
	if err := os.WriteFile(c.ConfigPath, []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	c.start(t, []string{"run", "--config", c.ConfigPath, "--adapter", "caddyfile"})
	if err := c.waitReady(30*time.Second, true); err != nil {
		t.Fatalf("caddy did not become ready: %v\nCaddyfile:\n%s\nlog:\n%s", err, cf, tail(c.Logs(), 20000))
	}
	return c
}

func (c *Caddy) start(t *testing.T, args []string) {
	t.Helper()
	bin := caddyBinary(t)
	cmd := exec.Command(bin, args...)
	cmd.Dir = c.Dir
	cmd.Env = c.Env
	cmd.Stdout = c.logs
	cmd.Stderr = c.logs
	cmd.WaitDelay = 5 * time.Second // do not hang on pipes inherited by stray children
	c.Cmd = cmd
	if err := cmd.Start(); err != nil {
		t.Fatalf("start caddy: %v", err)
	}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.terminate(10 * time.Second)
		if t.Failed() {
			t.Logf("caddy (pid %d) log:\n%s", cmd.Process.Pid, tail(c.Logs(), 60000))
		}
	})
}

func (c *Caddy) waitReady(timeout time.Duration, needHTTP bool) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	adminOK := false
	for time.Now().Before(deadline) {
		select {
		case <-c.done:
			return fmt.Errorf("caddy exited: %v", c.waitErr)
		default:
		}
		if !adminOK {
			resp, err := client.Get(c.AdminURL + "/config/")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				adminOK = resp.StatusCode == 200
			}
		}
		if adminOK {
			if !needHTTP {
				return nil
			}
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.Port), time.Second)
			if err == nil {
				conn.Close()
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("timeout after %v", timeout)
}

// terminate sends SIGINT, waits up to grace, then SIGKILLs. Idempotent.
func (c *Caddy) terminate(grace time.Duration) {
	c.stopOnce.Do(func() {
		select {
		case <-c.done:
			return
		default:
		}
		_ = c.Cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-c.done:
		case <-time.After(grace):
			_ = c.Cmd.Process.Kill()
			<-c.done
		}
	})
	<-c.done
}

// Pid of the caddy process.
func (c *Caddy) Pid() int { return c.Cmd.Process.Pid }

// Exited reports whether the caddy process has exited.
func (c *Caddy) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Logs returns everything caddy wrote to stdout and stderr so far.
func (c *Caddy) Logs() string { return c.logs.String() }

// WaitLog polls Logs until it contains substr, failing the test after timeout.
func (c *Caddy) WaitLog(t *testing.T, substr string, timeout time.Duration) {
	t.Helper()
	if !c.waitLog(substr, timeout) {
		t.Fatalf("caddy log does not contain %q after %v; log tail:\n%s", substr, timeout, tail(c.Logs(), 8000))
	}
}

func (c *Caddy) waitLog(substr string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(c.Logs(), substr) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Stop stops caddy gracefully (SIGINT) and waits for it (SIGKILL after 10 s).
func (c *Caddy) Stop(t *testing.T) {
	t.Helper()
	start := time.Now()
	c.terminate(10 * time.Second)
	if time.Since(start) > 9*time.Second {
		t.Errorf("caddy took %v to stop after SIGINT", time.Since(start))
	}
}

// Kill sends SIGKILL to caddy and waits for it.
func (c *Caddy) Kill(t *testing.T) {
	t.Helper()
	c.stopOnce.Do(func() {
		_ = c.Cmd.Process.Kill()
	})
	<-c.done
}

// ---------------------------------------------------------------------------------------------
// /proc helpers

// procStat returns (ppid, comm) of pid, ok=false when it does not exist (or is a zombie when
// skipZombie is set).
func procStat(pid int) (ppid int, state string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, "", false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, "", false
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[0], true
}

// pidAlive reports whether pid exists and is not a zombie.
func pidAlive(pid int) bool {
	_, state, ok := procStat(pid)
	return ok && state != "Z"
}

// childPids lists the live children of pid.
func childPids(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, state, ok := procStat(p)
		if ok && ppid == pid && state != "Z" {
			out = append(out, p)
		}
	}
	sort.Ints(out)
	return out
}

// WorkerPids lists the live child processes of caddy (the Python workers).
func (c *Caddy) WorkerPids() []int { return childPids(c.Pid()) }

// waitWorkers waits until caddy has at least n live children and returns them.
func (c *Caddy) waitWorkers(t *testing.T, n int, timeout time.Duration) []int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p := c.WorkerPids()
		if len(p) >= n {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy has %d child processes %v after %v, want >= %d", len(p), p, timeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// vmRSS returns VmRSS of pid in KiB (-1 if unknown).
func vmRSS(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "VmRSS:") {
			fs := strings.Fields(line)
			if len(fs) >= 2 {
				v, _ := strconv.Atoi(fs[1])
				return v
			}
		}
	}
	return -1
}

// waitPidsGone polls until none of pids is alive; it returns the survivors.
func waitPidsGone(pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		var alive []int
		for _, p := range pids {
			if pidAlive(p) {
				alive = append(alive, p)
			}
		}
		if len(alive) == 0 || time.Now().After(deadline) {
			return alive
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

// testClient is shared by the plain helpers. Redirects are not followed.
var testClient = &http.Client{
	Timeout: 60 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
	Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	},
}

// get performs a GET and returns the response (body already read and closed) and the body.
func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	return do(t, "GET", url, nil, nil)
}

// post performs a POST with the given body and content type.
func post(t *testing.T, url, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	return do(t, "POST", url, map[string]string{"Content-Type": contentType}, bytes.NewReader(body))
}

// do performs a request with headers; body may be nil.
func do(t *testing.T, method, url string, headers map[string]string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, b
}

// tryGet is get without failing the test (for polling loops).
func tryGet(url string, timeout time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := testClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// waitStatus polls url until it answers with want (each attempt bounded), failing after timeout.
func waitStatus(t *testing.T, url string, want int, timeout time.Duration) []byte {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		code, b, err := tryGet(url, 10*time.Second)
		if err == nil && code == want {
			return b
		}
		last = fmt.Sprintf("status %d err %v body %.300q", code, err, b)
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: no %d after %v; last: %s", url, want, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runCaddyCmd runs the caddy binary with args (no server) and returns combined output and
// the exit error.
func runCaddyCmd(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBinary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "xdg-data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "xdg-config"), "HOME="+dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...(truncated)...\n" + s[len(s)-n:]
}
