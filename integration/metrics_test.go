//go:build linux

package integration

// Prometheus metrics of the wsgi pools, in Caddy's own registry.

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

type metricSample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// parseMetrics parses the Prometheus text exposition format (enough of it for our series).
func parseMetrics(text string) []metricSample {
	var out []metricSample
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s := metricSample{Labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(line, "{ "); i >= 0 && line[i] == '{' {
			s.Name = line[:i]
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			parseLabels(line[i+1:j], s.Labels)
			rest = strings.TrimSpace(line[j+1:])
		} else if i >= 0 {
			s.Name = line[:i]
			rest = strings.TrimSpace(line[i+1:])
		} else {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		s.Value = v
		out = append(out, s)
	}
	return out
}

func parseLabels(s string, into map[string]string) {
	for len(s) > 0 {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return
		}
		key := strings.TrimSpace(strings.TrimPrefix(s[:eq], ","))
		var val strings.Builder
		i := eq + 2
		for ; i < len(s); i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[i])
				}
				continue
			}
			if s[i] == '"' {
				break
			}
			val.WriteByte(s[i])
		}
		into[key] = val.String()
		s = strings.TrimLeft(s[min(i+1, len(s)):], ", ")
	}
}

// metricValues returns the samples named name whose labels include all of match.
func metricValues(ms []metricSample, name string, match map[string]string) []metricSample {
	var out []metricSample
	for _, m := range ms {
		if m.Name != name {
			continue
		}
		ok := true
		for k, v := range match {
			if m.Labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, m)
		}
	}
	return out
}

func metricSum(ms []metricSample, name string, match map[string]string) (float64, int) {
	var sum float64
	vs := metricValues(ms, name, match)
	for _, m := range vs {
		sum += m.Value
	}
	return sum, len(vs)
}

func scrape(url string) (string, error) {
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := cl.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return string(b), err
}

// scrapeWSGI scrapes the site's /metrics, and the admin endpoint's /metrics when the site's
// has no caddy_wsgi_ series; it returns the samples and where they came from.
func scrapeWSGI(t *testing.T, c *Caddy) ([]metricSample, string) {
	t.Helper()
	var errs []string
	for _, u := range []string{c.URL + "/metrics", c.AdminURL + "/metrics"} {
		text, err := scrape(u)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if strings.Contains(text, "caddy_wsgi_") {
			return parseMetrics(text), u
		}
		errs = append(errs, u+": no caddy_wsgi_ series")
	}
	t.Fatalf("no caddy_wsgi_ metrics: %s", strings.Join(errs, "; "))
	return nil, ""
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock()+`
http://127.0.0.1:{PORT} {
	metrics /metrics
	wsgi lifecycle {
		python {PYTHON}
		chdir {APPS}
		env MARKER_DIR {TMP}
		workers 2
		threads 2
		timeout 1s
		name mx
	}
}
`)
	waitStatus(t, c.URL+"/pid", 200, 20*time.Second)
	waitPool(t, c, "mx", 15*time.Second, "2 workers", func(p *wsgiPool) bool { return len(p.Workers) == 2 })

	const n2xx, n4xx, n5xx = 12, 3, 2
	for i := 0; i < n2xx-1; i++ {
		get(t, c.URL+"/pid")
	}
	for i := 0; i < n4xx; i++ {
		if r, _ := get(t, c.URL+"/status?code=404"); r.StatusCode != 404 {
			t.Fatalf("/status?code=404: %d", r.StatusCode)
		}
	}
	for i := 0; i < n5xx; i++ {
		if r, _ := get(t, c.URL+"/raise"); r.StatusCode != 500 {
			t.Fatalf("/raise: %d", r.StatusCode)
		}
	}
	// one slow request (below the 1 s timeout) in flight while we scrape
	id := token("mx")
	slow := goGet(c.URL+"/sleep?s=0.8&id="+id, 20*time.Second)
	readPidMarker(t, c, id)
	ms, src := scrapeWSGI(t, c)
	t.Logf("metrics from %s", src)
	pool := map[string]string{"pool": "mx"}
	if v, n := metricSum(ms, "caddy_wsgi_busy_threads", pool); n != 1 || v != 1 {
		t.Errorf("caddy_wsgi_busy_threads{pool=mx} = %v (%d series) with one request running, want 1", v, n)
	}
	if v, n := metricSum(ms, "caddy_wsgi_queue_depth", pool); n != 1 || v != 0 {
		t.Errorf("caddy_wsgi_queue_depth{pool=mx} = %v (%d series), want 0", v, n)
	}
	if r := awaitResult(t, slow, 20*time.Second, "slow"); r.code != 200 {
		t.Errorf("slow request: %d %v", r.code, r.err)
	}

	// a forced restart, a crash and a timeout
	if code, b, err := adminDo(c, "POST", "/wsgi/pools/mx/restart", nil); code != 200 {
		t.Errorf("restart: %d %v %.300s", code, err, b)
	} else if !strings.Contains(string(b), `"restarted":2`) && !strings.Contains(string(b), `"restarted": 2`) {
		t.Errorf("restart answer %s, want restarted 2", b)
	}
	p := waitPool(t, c, "mx", 15*time.Second, "2 workers", func(p *wsgiPool) bool { return len(p.Workers) == 2 })
	victim := p.Workers[0].Pid
	syscall.Kill(victim, syscall.SIGKILL)
	waitPool(t, c, "mx", 15*time.Second, "the killed worker replaced", func(p *wsgiPool) bool {
		return len(p.Workers) == 2 && !contains(p.pids(), victim)
	})
	lid := token("loop")
	loop := goGet(c.URL+"/loop?id="+lid, 20*time.Second)
	loopPid := readPidMarker(t, c, lid)
	if r := awaitResult(t, loop, 20*time.Second, "/loop"); r.code != 504 {
		t.Errorf("/loop with timeout 1s: %d %v, want 504", r.code, r.err)
	}
	// (TestTimeoutKillsStuckWorker checks requests right after a timeout; here, let the
	// replacement settle so that the counts below are exact)
	waitPidsGone([]int{loopPid}, 5*time.Second)
	waitPool(t, c, "mx", 15*time.Second, "2 workers after the timeout", func(p *wsgiPool) bool {
		return len(p.Workers) == 2 && !contains(p.pids(), loopPid)
	})
	get(t, c.URL+"/pid")
	// scale up and back down: the retired worker counts as a restart with reason scale
	if code, b, err := adminDo(c, "POST", "/wsgi/pools/mx/scale", []byte(`{"workers": 3}`)); code != 200 {
		t.Errorf("scale to 3: %d %v %.300s", code, err, b)
	}
	p3 := waitPool(t, c, "mx", 15*time.Second, "3 workers", func(p *wsgiPool) bool { return len(p.Workers) == 3 })
	if code, b, err := adminDo(c, "POST", "/wsgi/pools/mx/scale", []byte(`{"workers": 2}`)); code != 200 {
		t.Errorf("scale to 2: %d %v %.300s", code, err, b)
	}
	p2 := waitPool(t, c, "mx", 15*time.Second, "2 workers", func(p *wsgiPool) bool { return len(p.Workers) == 2 && p.WorkersWanted == 2 })
	var retired []int
	for _, pid := range p3.pids() {
		if !contains(p2.pids(), pid) {
			retired = append(retired, pid)
		}
	}
	waitPidsGone(retired, 10*time.Second)
	time.Sleep(1200 * time.Millisecond) // RSS is sampled every second

	// counters are updated when the request ends: give the last one a moment
	time.Sleep(300 * time.Millisecond)
	ms, _ = scrapeWSGI(t, c)
	var names []string
	seen := map[string]bool{}
	for _, m := range ms {
		if strings.HasPrefix(m.Name, "caddy_wsgi_") && !seen[m.Name] {
			seen[m.Name] = true
			names = append(names, m.Name)
		}
	}
	sort.Strings(names)
	t.Logf("caddy_wsgi_ series: %v", names)

	// workers by state: 2 in all, all idle now
	if v, n := metricSum(ms, "caddy_wsgi_workers", pool); v != 2 || n == 0 {
		t.Errorf("sum of caddy_wsgi_workers{pool=mx} = %v over %d series, want 2", v, n)
	}
	if v, _ := metricSum(ms, "caddy_wsgi_workers", map[string]string{"pool": "mx", "state": "idle"}); v != 2 {
		t.Errorf("caddy_wsgi_workers{pool=mx,state=idle} = %v, want 2 (series %v)", v, metricValues(ms, "caddy_wsgi_workers", pool))
	}
	if v, n := metricSum(ms, "caddy_wsgi_busy_threads", pool); n != 1 || v != 0 {
		t.Errorf("caddy_wsgi_busy_threads{pool=mx} = %v (%d series) when idle, want 0", v, n)
	}
	// requests by class: n2xx /pid (one of them the warm-up poll), the slow request and the
	// /pid after the restart are 2xx; the /loop (504) is a 5xx
	want2xx := float64(n2xx + 1 + 1)
	checkAtLeast := func(name string, match map[string]string, min float64) {
		t.Helper()
		v, n := metricSum(ms, name, match)
		if n == 0 || v < min {
			t.Errorf("%s%v = %v (%d series), want >= %v", name, match, v, n, min)
		}
	}
	checkAtLeast("caddy_wsgi_requests_total", map[string]string{"pool": "mx", "code": "2xx"}, want2xx)
	if v, _ := metricSum(ms, "caddy_wsgi_requests_total", map[string]string{"pool": "mx", "code": "4xx"}); v != n4xx {
		t.Errorf("caddy_wsgi_requests_total{pool=mx,code=4xx} = %v, want %d", v, n4xx)
	}
	// 5xx: the two /raise and the 504
	if v, _ := metricSum(ms, "caddy_wsgi_requests_total", map[string]string{"pool": "mx", "code": "5xx"}); v != n5xx+1 {
		t.Errorf("caddy_wsgi_requests_total{pool=mx,code=5xx} = %v, want %d (2 app errors + 1 timeout)", v, n5xx+1)
	}
	for _, m := range metricValues(ms, "caddy_wsgi_requests_total", pool) {
		if c := m.Labels["code"]; c != "2xx" && c != "3xx" && c != "4xx" && c != "5xx" {
			t.Errorf("caddy_wsgi_requests_total has code %q, want a class like 2xx", c)
		}
	}
	total, _ := metricSum(ms, "caddy_wsgi_requests_total", pool)
	checkAtLeast("caddy_wsgi_request_duration_seconds_count", pool, total)
	checkAtLeast("caddy_wsgi_queue_wait_seconds_count", pool, total)
	if v, _ := metricSum(ms, "caddy_wsgi_request_duration_seconds_bucket", map[string]string{"pool": "mx", "le": "+Inf"}); v < total {
		t.Errorf("caddy_wsgi_request_duration_seconds_bucket{le=+Inf} = %v, want >= %v", v, total)
	}
	if v, _ := metricSum(ms, "caddy_wsgi_request_duration_seconds_sum", pool); v < 1.7 {
		t.Errorf("caddy_wsgi_request_duration_seconds_sum = %v, want >= 1.7 (a 0.8 s request and a 1 s timeout)", v)
	}
	// restarts by reason
	for reason, want := range map[string]float64{"restart": 2, "crash": 1, "timeout": 1} {
		if v, n := metricSum(ms, "caddy_wsgi_worker_restarts_total", map[string]string{"pool": "mx", "reason": reason}); n != 1 || v != want {
			t.Errorf("caddy_wsgi_worker_restarts_total{pool=mx,reason=%s} = %v (%d series), want %v", reason, v, n, want)
		}
	}
	if v, n := metricSum(ms, "caddy_wsgi_worker_restarts_total", map[string]string{"pool": "mx", "reason": "scale"}); n != 1 || v < 1 || v > 2 {
		t.Errorf("caddy_wsgi_worker_restarts_total{pool=mx,reason=scale} = %v (%d series) after scaling 2 -> 3 -> 2, want 1 (the retired worker)", v, n)
	}
	for _, m := range metricValues(ms, "caddy_wsgi_worker_restarts_total", pool) {
		switch m.Labels["reason"] {
		case "crash", "timeout", "max_requests", "max_rss", "max_lifetime", "restart", "reload", "scale":
		default:
			t.Errorf("caddy_wsgi_worker_restarts_total has reason %q, not one of the documented reasons", m.Labels["reason"])
		}
	}
	// RSS per live worker, and none for the dead ones
	cur := mustPool(t, c, "mx").pids()
	rss := metricValues(ms, "caddy_wsgi_worker_rss_bytes", pool)
	got := map[int]float64{}
	for _, m := range rss {
		pid, _ := strconv.Atoi(m.Labels["pid"])
		got[pid] = m.Value
	}
	for _, pid := range cur {
		v, ok := got[pid]
		if !ok {
			t.Errorf("no caddy_wsgi_worker_rss_bytes{pool=mx,pid=%d} (series %v)", pid, got)
		} else if v < 2<<20 || v > 1<<30 {
			t.Errorf("caddy_wsgi_worker_rss_bytes{pid=%d} = %v, implausible (VmRSS %d KiB)", pid, v, vmRSS(pid))
		}
	}
	for pid := range got {
		if !contains(cur, pid) {
			t.Errorf("caddy_wsgi_worker_rss_bytes still has a series for pid %d, which is not a worker (workers %v)", pid, cur)
		}
	}
}
