//go:build linux

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"testing"
	"time"
)

// Harness: the admin API as the tests read it (pools, workers, waiting for a state).

type wsgiPool struct {
	Name          string           `json:"name"`
	App           string           `json:"app"`
	State         string           `json:"state"`
	WorkersWanted int              `json:"workers_wanted"`
	Threads       int              `json:"threads"`
	BusyThreads   int              `json:"busy_threads"`
	QueueDepth    int              `json:"queue_depth"`
	Failing       bool             `json:"failing"`
	Lifecycle     string           `json:"lifecycle"` // starting, ready, failing, draining, stopped
	Restarts      map[string]int64 `json:"restarts"`
	Workers       []wsgiWorker     `json:"workers"`
}

type wsgiWorker struct {
	Pid         int             `json:"pid"`
	State       string          `json:"state"`
	Lifecycle   string          `json:"lifecycle"` // booting, ready, busy, retiring, stopped
	BusyThreads int             `json:"busy_threads"`
	Requests    int64           `json:"requests"`
	Started     json.RawMessage `json:"started"`
	RSSBytes    int64           `json:"rss_bytes"`
	Current     []struct {
		Request    string  `json:"request"`
		AgeSeconds float64 `json:"age_seconds"`
	} `json:"current"`
}

// adminDo sends a request to caddy's admin endpoint and returns status and body.
func adminDo(c *Caddy, method, path string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, c.AdminURL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// listPools is GET /wsgi/pools, without failing the test.
func listPools(c *Caddy) ([]wsgiPool, error) {
	code, b, err := adminDo(c, "GET", "/wsgi/pools", nil)
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("GET /wsgi/pools: status %d: %.300s", code, b)
	}
	var ps []wsgiPool
	if err := json.Unmarshal(b, &ps); err != nil {
		return nil, fmt.Errorf("GET /wsgi/pools: not a JSON array of pools: %v: %.500s", err, b)
	}
	return ps, nil
}

// mustPools is GET /wsgi/pools, failing the test on error.
func mustPools(t *testing.T, c *Caddy) []wsgiPool {
	t.Helper()
	ps, err := listPools(c)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func mustPool(t *testing.T, c *Caddy, name string) *wsgiPool {
	t.Helper()
	ps := mustPools(t, c)
	p := poolByName(ps, name)
	if p == nil {
		var names []string
		for _, x := range ps {
			names = append(names, x.Name)
		}
		t.Fatalf("no pool named %q in GET /wsgi/pools (pools: %q)", name, names)
	}
	return p
}

func (p *wsgiPool) pids() []int {
	var out []int
	for _, w := range p.Workers {
		out = append(out, w.Pid)
	}
	sort.Ints(out)
	return out
}

// waitPool polls GET /wsgi/pools until cond holds for pool name, failing after timeout.
func waitPool(t *testing.T, c *Caddy, name string, timeout time.Duration, what string, cond func(p *wsgiPool) bool) *wsgiPool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ps, err := listPools(c)
		if err == nil {
			if p := poolByName(ps, name); p != nil {
				if cond(p) {
					return p
				}
				b, _ := json.Marshal(p)
				last = string(b)
			} else {
				last = fmt.Sprintf("no pool %q", name)
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool %q: %s not reached within %v; last: %.2000s", name, what, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
