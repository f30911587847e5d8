//go:build linux

package integration

// `caddy wsgi-server -c gunicorn.conf.py` with config files in the style of real projects:
// a Django-on-Docker one (bind from the environment, workers from cpu_count(), access log
// to stdout), NetBox's gunicorn.py, and a plain one with server hooks. Each test checks
// the effect on the running server, not the config alone.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// gcWrite writes a config file into a fresh directory and returns the directory.
func gcWrite(t *testing.T, name, text string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// gcPool is the part of GET /wsgi/pools these tests read.
type gcPool struct {
	Name          string `json:"name"`
	WorkersWanted int    `json:"workers_wanted"`
	Threads       int    `json:"threads"`
	Workers       []struct {
		Pid         int   `json:"pid"`
		MaxRequests int64 `json:"max_requests"`
	} `json:"workers"`
}

// gcWaitPool polls the admin API until the pool has n workers.
func gcWaitPool(t *testing.T, c *Caddy, n int) gcPool {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, b, err := adminDo(c, "GET", "/wsgi/pools", nil)
		var ps []gcPool
		if err == nil && code == 200 && json.Unmarshal(b, &ps) == nil && len(ps) == 1 && len(ps[0].Workers) == n {
			return ps[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /wsgi/pools: want one pool with %d workers, got %d %v: %.2000s", n, code, err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestGunicornConfDjangoDocker: a gunicorn.conf.py as Django-on-Docker projects write it,
// run as their Dockerfile's CMD would be (`gunicorn -c gunicorn.conf.py`, with no APP:
// wsgi_app is in the file). It imports Django, so only the venv's interpreter can read it.
func TestGunicornConfDjangoDocker(t *testing.T) {
	_, _, env := djangoPrepare(t)
	python := venvPython(t)
	out, err := exec.Command(python, "-c", "import multiprocessing; print(multiprocessing.cpu_count())").Output()
	if err != nil {
		t.Fatal(err)
	}
	cpus, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	dir := gcWrite(t, "gunicorn.conf.py", fmt.Sprintf(`# Gunicorn settings for the web container.
import multiprocessing
import os

import django  # the image's interpreter has the project's requirements

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = multiprocessing.cpu_count()
chdir = %q
wsgi_app = "mysite.wsgi:application"
raw_env = ["DJANGO_SETTINGS_MODULE=mysite.settings"]
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
worker_tmp_dir = "/dev/shm"
capture_output = True
`, filepath.Join(repoRoot(), "examples", "django")))

	var djangoEnv []string
	for _, kv := range env {
		if strings.HasPrefix(kv, "DJANGO_") && !strings.HasPrefix(kv, "DJANGO_SETTINGS_MODULE=") {
			djangoEnv = append(djangoEnv, kv)
		}
	}
	c := ecoStart(t, dir, nil, func(cc *Caddy) []string {
		cc.Env = append(cc.Env, djangoEnv...)
		cc.Env = append(cc.Env, fmt.Sprintf("GUNICORN_BIND=127.0.0.1:%d", cc.Port))
		return []string{"wsgi-server", "-c", "gunicorn.conf.py", "--venv", venvDir(), "--admin", cc.Admin}
	})
	body := waitStatus(t, c.URL+"/admin/login/", 200, 60*time.Second)
	if !loginFormRe.Match(body) {
		t.Errorf("GET /admin/login/ (bind from GUNICORN_BIND): no login form:\n%.2000s", body)
	}
	p := gcWaitPool(t, c, cpus)
	if p.Name != "mysite.wsgi:application" || p.WorkersWanted != cpus {
		t.Errorf("pool %q wants %d workers; want mysite.wsgi:application with cpu_count() = %d", p.Name, p.WorkersWanted, cpus)
	}
	// accesslog = "-": Caddy's access log, on stdout.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(c.Logs(), `"logger":"http.log.access`) || !strings.Contains(c.Logs(), `/admin/login/`) {
		if time.Now().After(deadline) {
			t.Fatalf("no access log entry for /admin/login/:\n%s", tail(c.Logs(), 5000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// One warning for worker_tmp_dir and one for capture_output, each saying what instead.
	for _, s := range []string{"worker_tmp_dir (gunicorn.conf.py): not needed", "capture_output (gunicorn.conf.py): not needed"} {
		if n := strings.Count(c.Logs(), s); n != 1 {
			t.Errorf("log has %q %d times, want once", s, n)
		}
	}
}

// TestGunicornConfNetBox: NetBox's gunicorn.py, run as NetBox's systemd unit runs it
// (`--pythonpath DIR --config gunicorn.py APP`), with GUNICORN_CMD_ARGS and a flag on top:
// the command line beats GUNICORN_CMD_ARGS, which beats the file.
func TestGunicornConfNetBox(t *testing.T) {
	venvPython(t)
	c := newCaddy(t)
	dir := gcWrite(t, "gunicorn.py", fmt.Sprintf(`# Address and port the NetBox WSGI process listens on (typically localhost,
# behind the front-end web server).
bind = '127.0.0.1:%d'

# Number of gunicorn workers: 2n+1, where n is the number of CPU cores.
workers = 5

# Threads per worker process
threads = 3

# Seconds a request may take
timeout = 120

# Recycle a worker after this many requests (plus up to the jitter), to contain leaks.
max_requests = 5000
max_requests_jitter = 500
`, c.Port))
	c.Env = append(c.Env, "GUNICORN_CMD_ARGS=--threads 2 --workers 4")
	c.Dir = dir
	c.start(t, []string{"wsgi-server", "--pythonpath", appsDir(), "--config", "gunicorn.py", "-w", "3",
		"--venv", venvDir(), "--admin", c.Admin, "probe:application"})
	if err := c.waitReady(30*time.Second, true); err != nil {
		t.Fatalf("not ready: %v\n%s", err, tail(c.Logs(), 5000))
	}
	var doc struct {
		Wsgi struct {
			Multithread bool `json:"multithread"`
		} `json:"wsgi"`
	}
	fwJSON(t, "GET /", waitStatus(t, c.URL+"/", 200, 60*time.Second), &doc)
	if !doc.Wsgi.Multithread {
		t.Errorf("wsgi.multithread false: want threads from GUNICORN_CMD_ARGS")
	}
	p := gcWaitPool(t, c, 3)
	if p.WorkersWanted != 3 || p.Threads != 2 {
		t.Errorf("workers %d, threads %d; want 3 (-w over GUNICORN_CMD_ARGS and the file), 2 (GUNICORN_CMD_ARGS over the file)", p.WorkersWanted, p.Threads)
	}
	for _, w := range p.Workers {
		if w.MaxRequests < 5000 || w.MaxRequests > 5500 {
			t.Errorf("worker %d recycles after %d requests, want max_requests 5000 + jitter 0..500", w.Pid, w.MaxRequests)
		}
	}
}

// gcMarks reads the hook marker file name: one line per call.
func gcMarks(dir, name string) []string {
	b, _ := os.ReadFile(filepath.Join(dir, name))
	return strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(b)), " ", "_"))
}

// TestGunicornConfHooks: the server hooks of a plain gunicorn.conf.py run in the workers
// with Gunicorn's signatures and objects (server.log, worker.pid, req.method/path/query,
// resp.status_code); worker_abort runs when a request times out; worker_exit at stop.
func TestGunicornConfHooks(t *testing.T) {
	venvPython(t)
	marks := t.TempDir()
	c := newCaddy(t)
	dir := gcWrite(t, "gunicorn.conf.py", fmt.Sprintf(`import os

bind = "127.0.0.1:%d"
workers = 2
timeout = 2
graceful_timeout = 5
forwarded_allow_ips = "127.0.0.1"
limit_request_line = 2048
limit_request_fields = 20
limit_request_field_size = 1024
MARKS = os.environ["HOOK_MARKS"]


def _mark(name, *fields):
    with open(os.path.join(MARKS, name), "a") as f:
        f.write(" ".join(str(x) for x in fields) + "\n")


def on_starting(server):
    _mark("on_starting", server.pid)


def post_fork(server, worker):
    server.log.info("Worker spawned (pid: %%s)", worker.pid)
    _mark("post_fork", worker.pid, server.cfg.workers)


def post_worker_init(worker):
    _mark("post_worker_init", worker.pid)


def pre_request(worker, req):
    _mark("pre_request", worker.pid, req.method, req.path, req.query, dict(req.headers).get("X-HOOK-TEST"))


def post_request(worker, req, environ, resp):
    _mark("post_request", worker.pid, req.path, environ["REQUEST_METHOD"], resp.status_code)


def worker_abort(worker):
    _mark("worker_abort", worker.pid)


def worker_exit(server, worker):
    _mark("worker_exit", worker.pid)


def when_ready(server):
    pass
`, c.Port))
	c.Env = append(c.Env, "HOOK_MARKS="+marks)
	c.Dir = dir
	c.start(t, []string{"wsgi-server", "-c", "gunicorn.conf.py", "--chdir", appsDir(), "--venv", venvDir(),
		"--admin", c.Admin, "lifecycle:application"})
	if err := c.waitReady(30*time.Second, true); err != nil {
		t.Fatalf("not ready: %v\n%s", err, tail(c.Logs(), 5000))
	}
	p := gcWaitPool(t, c, 2)
	var pids []string
	for _, w := range p.Workers {
		pids = append(pids, strconv.Itoa(w.Pid))
	}
	sort.Strings(pids)
	waitMarks := func(name string, n int) []string {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			m := gcMarks(marks, name)
			if len(m) >= n {
				return m
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d calls, want %d\nlog:\n%s", name, len(m), n, tail(c.Logs(), 5000))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Without preload each worker is its own "server": on_starting runs in each.
	for _, name := range []string{"on_starting", "post_worker_init"} {
		got := waitMarks(name, 2)
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(pids, ",") {
			t.Errorf("%s ran in %v, want the workers %v", name, got, pids)
		}
	}
	for _, m := range waitMarks("post_fork", 2) {
		if !strings.HasSuffix(m, "_2") {
			t.Errorf("post_fork mark %q: want server.cfg.workers = 2", m)
		}
	}
	c.WaitLog(t, "Worker spawned (pid: ", 10*time.Second)
	c.WaitLog(t, "when_ready (hook in gunicorn.conf.py): no Python master", 10*time.Second)

	resp, body := do(t, "GET", c.URL+"/pid?x=1", map[string]string{"X-Hook-Test": "yes"}, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /pid: %d %s", resp.StatusCode, body)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	fwJSON(t, "GET /pid", body, &info)
	if got := waitMarks("pre_request", 1); got[0] != fmt.Sprintf("%d_GET_/pid_x=1_yes", info.Pid) {
		t.Errorf("pre_request mark %q, want pid GET /pid x=1 yes", got[0])
	}
	if got := waitMarks("post_request", 1); got[0] != fmt.Sprintf("%d_/pid_GET_200", info.Pid) {
		t.Errorf("post_request mark %q, want pid /pid GET 200", got[0])
	}

	// forwarded_allow_ips: Caddy (the client here is 127.0.0.1) trusts X-Forwarded-For/-Proto.
	for k, want := range map[string]string{"REMOTE_ADDR": "203.0.113.7", "wsgi.url_scheme": "https"} {
		resp, body = do(t, "GET", c.URL+"/environ?k="+k, map[string]string{"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}, nil)
		var env struct {
			Value string `json:"value"`
		}
		fwJSON(t, "GET /environ", body, &env)
		if resp.StatusCode != 200 || env.Value != want {
			t.Errorf("%s = %q (status %d), want %q from a trusted proxy", k, env.Value, resp.StatusCode, want)
		}
	}
	// limit_request_*: the header block is bounded (2048 + 20 x 1026 bytes, and Go's slack).
	if resp, _ := do(t, "GET", c.URL+"/pid", map[string]string{"X-Big": strings.Repeat("a", 1000)}, nil); resp.StatusCode != 200 {
		t.Errorf("1000-byte header: %d, want 200", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", c.URL+"/pid", map[string]string{"X-Big": strings.Repeat("a", 40000)}, nil); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("40000-byte header: %d, want 431", resp.StatusCode)
	}

	// timeout = 2: the stuck worker gets worker_abort before it is killed.
	resp, body = do(t, "GET", c.URL+"/sleep?s=60", nil, nil)
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("GET /sleep: %d %s, want 504 after timeout = 2", resp.StatusCode, body)
	}
	abort := waitMarks("worker_abort", 1)
	if !strings.Contains(strings.Join(pids, ","), abort[0]) {
		t.Errorf("worker_abort ran in %s, not one of the workers %v", abort[0], pids)
	}
	p = gcWaitPool(t, c, 2)
	c.Stop(t)
	exits := waitMarks("worker_exit", 2)
	for _, w := range p.Workers {
		if !strings.Contains(strings.Join(exits, ","), strconv.Itoa(w.Pid)) {
			t.Errorf("worker_exit did not run in worker %d at stop (ran in %v)", w.Pid, exits)
		}
	}
}

// TestGunicornConfBadFile: a config file with a syntax error stops the command with the
// file, the line and the reason; --print-config shows the settings read and the JSON.
func TestGunicornConfBadFile(t *testing.T) {
	venvPython(t)
	dir := gcWrite(t, "gunicorn.conf.py", "import os\n\nworkers = 2\nbind = '0.0.0.0:8000\n")
	out, err := runCaddyCmd(t, dir, "wsgi-server", "-c", "gunicorn.conf.py", "--venv", venvDir(), "app:application")
	if err == nil || !strings.Contains(out, "gunicorn.conf.py: line 4: SyntaxError") {
		t.Errorf("syntax error: err %v, output:\n%s\nwant gunicorn.conf.py: line 4: SyntaxError", err, out)
	}

	dir = gcWrite(t, "gunicorn.conf.py", "workers = 3\nthreads = 4\nkeepalive = 5\nspew = True\n")
	cmd := exec.Command(caddyBinary(t), "wsgi-server", "--venv", venvDir(), "--print-config", "app:application")
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("--print-config: %v\n%s", err, stderr.String())
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					IdleTimeout int64 `json:"idle_timeout"`
					Routes      []struct {
						Handle []struct {
							Workers int `json:"workers"`
							Threads int `json:"threads"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(stdout, &cfg); err != nil {
		t.Fatalf("--print-config stdout is not the JSON config: %v\n%s", err, stdout)
	}
	srv := cfg.Apps.HTTP.Servers["wsgi"]
	if len(srv.Routes) != 1 || srv.Routes[0].Handle[0].Workers != 3 || srv.Routes[0].Handle[0].Threads != 4 || srv.IdleTimeout != int64(5*time.Second) {
		t.Errorf("./gunicorn.conf.py (read without -c) not in the config: %s", stdout)
	}
	for _, want := range []string{"# Gunicorn config gunicorn.conf.py", "workers = 3 (gunicorn.conf.py)", "keepalive = 5", "# warning: spew"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("--print-config stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}

// TestGunicornConfASGI: asgi-server reads the same file; a Uvicorn worker_class is how
// Gunicorn runs ASGI apps and is accepted silently; worker hooks run in the asyncio workers,
// and pre_request (which UvicornWorker does not run either) is reported.
func TestGunicornConfASGI(t *testing.T) {
	venvPython(t)
	marks := t.TempDir()
	c := newCaddy(t)
	dir := gcWrite(t, "gunicorn.conf.py", fmt.Sprintf(`import os
bind = "127.0.0.1:%d"
workers = 2
worker_class = "uvicorn.workers.UvicornWorker"


def post_worker_init(worker):
    with open(os.path.join(os.environ["HOOK_MARKS"], "init-%%d" %% worker.pid), "w") as f:
        f.write(str(worker.cfg.workers))


def pre_request(worker, req):
    pass
`, c.Port))
	c.Env = append(c.Env, "HOOK_MARKS="+marks)
	c.Dir = dir
	c.start(t, []string{"asgi-server", "-c", "gunicorn.conf.py", "--chdir", appsDir(), "--venv", venvDir(),
		"--admin", c.Admin, "asgi_scope_probe:app"})
	if err := c.waitReady(30*time.Second, true); err != nil {
		t.Fatalf("not ready: %v\n%s", err, tail(c.Logs(), 5000))
	}
	waitStatus(t, c.URL+"/", 200, 60*time.Second)
	p := gcWaitPool(t, c, 2)
	for _, w := range p.Workers {
		deadline := time.Now().Add(20 * time.Second)
		for {
			b, err := os.ReadFile(filepath.Join(marks, fmt.Sprintf("init-%d", w.Pid)))
			if err == nil && string(b) == "2" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("post_worker_init did not run in ASGI worker %d (%q, %v)", w.Pid, b, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	c.WaitLog(t, "pre_request (hook in gunicorn.conf.py): not run by ASGI workers", 10*time.Second)
	if strings.Contains(c.Logs(), "worker_class (") {
		t.Errorf("a Uvicorn worker_class was warned about:\n%s", tail(c.Logs(), 3000))
	}
}
