//go:build linux

package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestResponseRing: body blocks of 16 KiB and more cross from the worker to Caddy in the
// channel's ring (PROTOCOL.md). Clients that keep up, clients that lag while the worker goes
// on (so slots stay held, blocks spill, and the rest falls back to the socket), blocks of
// every size around the slot, and a large single-block body all arrive whole and in order;
// streamed uploads, read by Caddy into the ring's inbound area, reach the app whole.
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

	// Uploads past buffer_body (1 MiB), read in pieces of every size.
	for _, ops := range []string{"read:65536,read:1,read:300000,read", "readline,read:7,iter"} {
		body := pattern(3 << 20)
		req, _ := http.NewRequest("POST", c.URL+"/input?ops="+ops, bytes.NewReader(body))
		resp, err := testClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Results []struct {
				Lens   []int
				SHA256 string
			}
		}
		err = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("upload %s: %d %v", ops, resp.StatusCode, err)
		}
		h := sha256.New()
		pos := 0
		for _, r := range doc.Results {
			n := 0
			for _, l := range r.Lens {
				n += l
			}
			h.Reset()
			h.Write(body[pos : pos+n])
			if hex.EncodeToString(h.Sum(nil)) != r.SHA256 {
				t.Errorf("upload %s: bytes %d..%d differ", ops, pos, pos+n)
			}
			pos += n
		}
		if pos != len(body) {
			t.Errorf("upload %s: the app read %d bytes of %d", ops, pos, len(body))
		}
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

// TestRingOutlivesItsWorker: a worker killed while a slow client's response still holds
// its ring slots leaves Caddy with a mapping it keeps until those slots are written or
// dropped: the client gets a broken response, never a complete-looking one or a crash, and
// the next worker serves intact streams.
func TestRingOutlivesItsWorker(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "behave", "workers 1"))
	const total = 40 << 20
	want := pattern(total)
	url := fmt.Sprintf("%s/pattern-stream?total=%d&sizes=65536", c.URL, total)
	resp, err := testClient.Get(url + "&pace=0.005") // 640 blocks: 3.2 s of producing
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(resp.Header.Get("X-Pid"))
	if pid == 0 {
		t.Fatalf("no worker pid: %q", resp.Header.Get("X-Pid"))
	}
	var got bytes.Buffer
	if _, err := io.CopyN(&got, resp.Body, 256<<10); err != nil {
		t.Fatal(err)
	}
	// The worker goes on: the socket buffers fill, then the pump's memory (ring slots),
	// then the spill file.
	time.Sleep(time.Second)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	_, err = io.Copy(&got, resp.Body)
	resp.Body.Close()
	if err == nil && got.Len() == total {
		t.Fatal("a stream cut by the worker's death looked complete")
	}
	if n := min(got.Len(), total); !bytes.Equal(got.Bytes()[:n], want[:n]) {
		t.Errorf("the bytes before the break differ at %d", firstDiff(got.Bytes()[:n], want[:n]))
	}
	for i := 0; i < 3; i++ {
		resp, body := get(t, url)
		if resp.StatusCode != 200 || !bytes.Equal(body, want) {
			t.Fatalf("after the kill: %d, %d bytes, first difference at %d", resp.StatusCode, len(body), firstDiff(body, want))
		}
	}
	if err := syscall.Kill(c.Pid(), 0); err != nil {
		t.Fatalf("caddy is gone: %v", err)
	}
}
