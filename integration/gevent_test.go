//go:build linux

package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGeventWorkerClass: with worker_class gevent one process serves many requests that
// wait on I/O at once, because the runtime patched the stdlib before importing the app.
func TestGeventWorkerClass(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "geventapp", "python {VENV}/bin/python", "workers 1",
		"worker_class gevent", "worker_connections 40"))
	waitStatus(t, c.URL+"/info", 200, 30*time.Second)

	var wg sync.WaitGroup
	failed := make(chan string, 30)
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, err := tryGet(c.URL+"/wait?0.5", 30*time.Second)
			if err != nil || code != 200 || string(body) != "waited" {
				failed <- string(body)
			}
		}()
	}
	wg.Wait()
	close(failed)
	for f := range failed {
		t.Errorf("a waiting request failed: %q", f)
	}
	_, body := get(t, c.URL+"/info")
	var info struct {
		MaxConcurrent int    `json:"max_concurrent"`
		SocketClass   string `json:"socket_class"`
		Multithread   bool   `json:"multithread"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if info.MaxConcurrent < 20 {
		t.Errorf("one gevent worker ran at most %d requests at once, want >= 20 of 30", info.MaxConcurrent)
	}
	if info.SocketClass != "gevent._socket3" || !info.Multithread {
		t.Errorf("socket.socket from %q, wsgi.multithread %v: want the gevent-patched stdlib and true", info.SocketClass, info.Multithread)
	}
}

// TestWorkerClassErrors: an unknown class is refused when the Caddyfile is read, and
// gevent with preload (gevent must patch before the import, in each worker) at load.
func TestWorkerClassErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	out, err := runCaddyCmd(t, dir, "adapt", "--config", write("eventlet", ":80 {\n\twsgi app {\n\t\tworker_class eventlet\n\t}\n}\n"))
	if err == nil || !strings.Contains(out, "want sync or gevent") || !strings.Contains(out, ":3") {
		t.Errorf("worker_class eventlet: %v\n%s", err, out)
	}
	out, err = runCaddyCmd(t, dir, "validate", "--adapter", "caddyfile", "--config", write("preload", ":80 {\n\twsgi app {\n\t\tworker_class gevent\n\t\tpreload\n\t}\n}\n"))
	if err == nil || !strings.Contains(out, "cannot be combined with preload") {
		t.Errorf("worker_class gevent with preload: %v\n%s", err, out)
	}
}
