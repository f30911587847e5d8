//go:build linux

package integration

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestResponseRing: body blocks of 16 KiB and more cross from the worker to Caddy in the
// channel's response ring (PROTOCOL.md). Clients that keep up, clients that lag while the
// worker goes on (so slots stay held, blocks spill, and the rest falls back to the socket),
// blocks of every size around the slot, and a large single-block body all arrive whole and
// in order.
func TestResponseRing(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "behave", "workers 1", "threads 2"))
	const total = 6 << 20
	want := pattern(total)
	const sizes = "1000,16384,65536,200000,70000,4096,131072,65535"
	url := fmt.Sprintf("%s/pattern-stream?total=%d&sizes=%s", c.URL, total, sizes)

	var wg sync.WaitGroup
	var pid string
	var pidOnce sync.Once
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func(slow bool) {
			defer wg.Done()
			resp, err := testClient.Get(url)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			pidOnce.Do(func() { pid = resp.Header.Get("X-Pid") })
			var got bytes.Buffer
			if slow {
				for k := 0; k < 30; k++ {
					if _, err := io.CopyN(&got, resp.Body, 64<<10); err != nil {
						t.Errorf("slow reader: %v", err)
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			if _, err := io.Copy(&got, resp.Body); err != nil {
				t.Errorf("reading: %v", err)
				return
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("slow=%v: %d bytes, first difference at %d", slow, got.Len(), firstDiff(got.Bytes(), want))
			}
		}(i%3 == 0)
	}
	wg.Wait()

	resp, body := get(t, fmt.Sprintf("%s/pattern-stream?total=%d&list=1", c.URL, 300000))
	if resp.StatusCode != 200 || !bytes.Equal(body, want[:300000]) || resp.ContentLength != 300000 {
		t.Errorf("single-block body: %d, %d bytes (Content-Length %d), first difference at %d",
			resp.StatusCode, len(body), resp.ContentLength, firstDiff(body, want[:300000]))
	}

	// The test means nothing if the blocks went through the socket.
	if _, err := strconv.Atoi(pid); err != nil {
		t.Fatalf("no worker pid: %q", pid)
	}
	maps, err := os.ReadFile("/proc/" + pid + "/maps")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(maps), "memfd:caddy-wsgi-ring"); n == 0 {
		t.Errorf("worker %s maps no response ring", pid)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
