//go:build linux

package integration

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestASGIFastAPI runs a FastAPI app with the asgi directive: JSON, request bodies (inline
// and streamed), a streaming response, concurrency on one worker, and the scope.
func TestASGIFastAPI(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock()+`http://127.0.0.1:{PORT} {
	handle_path /api/* {
		asgi fastapiapp:app {
			python {VENV}/bin/python
			chdir {APPS}
			workers 1
			worker_connections 50
			buffer_body 64KiB
		}
	}
}
`)
	waitStatus(t, c.URL+"/api/items/1", 200, 30*time.Second)

	_, body := get(t, c.URL+"/api/items/42?q=caf%C3%A9")
	var item struct {
		ItemID int    `json:"item_id"`
		Q      string `json:"q"`
	}
	if err := json.Unmarshal(body, &item); err != nil || item.ItemID != 42 || item.Q != "café" {
		t.Errorf("GET /items/42: %s (%v)", body, err)
	}

	for _, size := range []int{10, 300 << 10} { // inline, then streamed past buffer_body
		payload := bytes.Repeat([]byte("z"), size)
		resp, b := post(t, c.URL+"/api/echo", "application/octet-stream", payload)
		var echo struct {
			Length int `json:"length"`
		}
		if json.Unmarshal(b, &echo); resp.StatusCode != 200 || echo.Length != size {
			t.Errorf("POST /echo of %d bytes: %d %s", size, resp.StatusCode, b)
		}
	}

	resp, b := get(t, c.URL+"/api/stream")
	if resp.StatusCode != 200 || strings.Count(string(b), "chunk") != 5 {
		t.Errorf("GET /stream: %d %q", resp.StatusCode, b)
	}

	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, b, err := tryGet(c.URL+"/api/wait", 30*time.Second); err != nil || code != 200 {
				t.Errorf("GET /wait: %d %s %v", code, b, err)
			}
		}()
	}
	wg.Wait()
	_, b = get(t, c.URL+"/api/info")
	var info struct {
		MaxConcurrent int    `json:"max_concurrent"`
		RootPath      string `json:"root_path"`
		Client        []any  `json:"client"`
		Scheme        string `json:"scheme"`
	}
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if info.MaxConcurrent < 10 {
		t.Errorf("one asgi worker ran at most %d requests at once, want >= 10 of 20", info.MaxConcurrent)
	}
	if info.RootPath != "/api" || len(info.Client) != 2 || info.Client[0] != "127.0.0.1" || info.Scheme != "http" {
		t.Errorf("scope: root_path %q client %v scheme %q", info.RootPath, info.Client, info.Scheme)
	}
}
