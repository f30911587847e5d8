//go:build linux

package integration

// ASGI frameworks under the asgi directive, against the real packages pinned in
// requirements-test.txt: Starlette (streaming in both directions, JSON, root_path under
// handle_path), FastAPI background tasks, and Django's ASGI handler (async and sync views,
// CSRF). The apps are integration/testdata/apps/asgi_*.
//
// Assertions of an ASGI requirement that the runtime (pyruntime/) got wrong when these tests
// were written run through asgiSpec, as subtests named spec_<id>: they fail while the bug is
// there. To run everything else meanwhile:
//
//	go test -run 'TestASGI' -skip '/spec_' ./integration/

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// asgiSpec runs fn as the subtest "spec_<id>". It marks the assertions of an ASGI
// requirement (the spec's, or one that the frameworks rely on) that pyruntime did not meet
// when the test was written; the subtest fails as long as the bug is there. Keep the ids
// stable: they are how these checks are found, skipped (-skip '/spec_') and reported.
func asgiSpec(t *testing.T, id string, fn func(t *testing.T)) bool {
	t.Helper()
	return t.Run("spec_"+id, fn)
}

// asgiGetJSON GETs url and decodes a 200 JSON answer into v (fails the calling test otherwise).
func asgiGetJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, b := get(t, url)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %.300q", url, resp.StatusCode, b)
	}
	fwJSON(t, "GET "+url, b, v)
}

// asgiWithin runs f in a goroutine and fails the test if it returns an error or has not
// returned after d (f must not call t's methods: it may outlive the test).
func asgiWithin(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(d):
		t.Fatalf("%s: not done after %v", what, d)
	}
}

// ---------------------------------------------------------------------------------------------
// Starlette

// TestASGIStarlette runs a Starlette app under handle_path /st/*: a request body read with
// request.stream() while it is still being uploaded, a StreamingResponse whose first message
// reaches the client before the app sends the next one, JSON both ways, and URLs built from
// root_path.
func TestASGIStarlette(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock()+`http://127.0.0.1:{PORT} {
	handle_path /st/* {
		asgi asgi_starlette_app:app {
			venv {VENV}
			chdir {APPS}
			workers 1
			worker_connections 20
			buffer_body 64KiB
			timeout 60s
		}
	}
}
`)
	base := c.URL + "/st"
	waitStatus(t, base+"/items/1", 200, 60*time.Second)

	t.Run("request_stream", func(t *testing.T) { testStarletteUpload(t, base) })
	t.Run("streaming_response", func(t *testing.T) { testStarletteStreaming(t, base) })

	t.Run("json", func(t *testing.T) {
		in := map[string]any{"a": float64(1), "é": "☕", "list": []any{float64(1), "two", nil}}
		payload, _ := json.Marshal(in)
		resp, b := post(t, base+"/json", "application/json", payload)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("POST /json: %d %q %.300q", resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
		var out struct {
			Got         map[string]any `json:"got"`
			Keys        []string       `json:"keys"`
			Answer      string         `json:"answer"`
			ContentType string         `json:"content_type"`
		}
		fwJSON(t, "POST /json", b, &out)
		if fmt.Sprint(out.Got) != fmt.Sprint(in) || strings.Join(out.Keys, ",") != "a,list,é" ||
			out.Answer != "café ☕" || out.ContentType != "application/json" {
			t.Errorf("POST /json: %s", b)
		}
	})

	// URLs under handle_path /st/*: Starlette builds url_for and base_url from root_path,
	// request.url from path (which per the ASGI spec includes root_path).
	var where map[string]string
	asgiGetJSON(t, base+"/where", &where)
	if where["root_path"] != "/st" || where["base_url"] != c.URL+"/st/" ||
		where["url_for_item"] != c.URL+"/st/items/7" || where["url_for_leaf"] != c.URL+"/st/sub/leaf/x" {
		t.Errorf("GET /st/where: root_path %q base_url %q url_for(item) %q url_for(sub:leaf) %q, want /st, %s/st/, %s/st/items/7, %s/st/sub/leaf/x",
			where["root_path"], where["base_url"], where["url_for_item"], where["url_for_leaf"], c.URL, c.URL, c.URL)
	}
	var item struct {
		ItemID int `json:"item_id"`
	}
	asgiGetJSON(t, base+"/items/7", &item)
	if item.ItemID != 7 {
		t.Errorf("GET /st/items/7: item_id %d", item.ItemID)
	}

	// ASGI spec (www, "WSGI compatibility"): PATH_INFO "can be derived by stripping root_path
	// from path", i.e. path is the full path, root_path included. Starlette relies on it for
	// request.url and for routing below a Mount; Uvicorn --root-path does it.
	asgiSpec(t, "path_includes_root_path", func(t *testing.T) {
		if where["path"] != "/st/where" || where["url"] != c.URL+"/st/where" {
			t.Errorf("GET /st/where: scope path %q, request.url %q; want /st/where and %s/st/where", where["path"], where["url"], c.URL)
		}
		// A Mount below the prefix: its routes match the path with root_path stripped.
		if code, b, err := tryGet(base+"/sub/leaf/x", 30*time.Second); err != nil || code != 200 {
			t.Errorf("GET /st/sub/leaf/x (a Starlette Mount under handle_path): %d %v %.200q, want 200", code, err, b)
		} else {
			var leaf map[string]string
			fwJSON(t, "GET /st/sub/leaf/x", b, &leaf)
			if leaf["leaf"] != "x" || leaf["url"] != c.URL+"/st/sub/leaf/x" || leaf["root_path"] != "/st/sub" {
				t.Errorf("GET /st/sub/leaf/x: %s", b)
			}
		}
	})
	// An app route that starts with the mount prefix: /st/st/inner is the app's /st/inner
	// (handle_path strips /st once; path is /st/st/inner, root_path /st).
	asgiSpec(t, "prefix_stripped_once", func(t *testing.T) {
		if code, b, err := tryGet(base+"/st/inner", 30*time.Second); err != nil || code != 200 {
			t.Errorf("GET /st/st/inner (the app's route /st/inner): %d %v %.200q, want 200", code, err, b)
		}
	})
}

// testStarletteUpload sends a body in two parts through a pipe and waits, between them, until
// the app has read every byte of the first part: proof that the app reads the body while it
// is being uploaded (it is larger than buffer_body). Then the whole body must arrive intact.
func testStarletteUpload(t *testing.T, base string) {
	const id = "upload1"
	part1, part2 := fwRandom(t, 256<<10), fwRandom(t, 768<<10)
	pr, pw := io.Pipe()
	type result struct {
		code int
		body []byte
		err  error
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/upload?id="+id, pr)
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := testClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{resp.StatusCode, b, err}
	}()
	writeErr := make(chan error, 1)
	go func() { _, err := pw.Write(part1); writeErr <- err }()
	defer pw.CloseWithError(io.ErrUnexpectedEOF) // unblocks the request if the test fails early

	deadline := time.Now().Add(30 * time.Second)
	received := -2
	for received != len(part1) {
		var p struct {
			Received int `json:"received"`
		}
		asgiGetJSON(t, base+"/progress?id="+id, &p)
		received = p.Received
		if received > len(part1) {
			t.Fatalf("the app read %d bytes, more than the %d sent so far", received, len(part1))
		}
		if time.Now().After(deadline) {
			t.Fatalf("the app has read %d of the %d bytes sent so far after 30s (-1: not called yet): the body is not streamed to request.stream() while it is uploaded",
				received, len(part1))
		}
		if received != len(part1) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("writing the first part: %v", err)
	}
	if _, err := pw.Write(part2); err != nil {
		t.Fatalf("writing the second part: %v", err)
	}
	pw.Close()
	r := <-done
	if r.err != nil || r.code != 200 {
		t.Fatalf("POST /upload: %d %v %.300q", r.code, r.err, r.body)
	}
	var out struct {
		Total  int    `json:"total"`
		Chunks int    `json:"chunks"`
		SHA256 string `json:"sha256"`
	}
	fwJSON(t, "POST /upload", r.body, &out)
	all := append(append([]byte{}, part1...), part2...)
	if out.Total != len(all) || out.SHA256 != fwSHA256(all) || out.Chunks < 2 {
		t.Errorf("POST /upload: the app read %d bytes in %d chunks, sha256 %s; sent %d bytes, sha256 %s",
			out.Total, out.Chunks, out.SHA256, len(all), fwSHA256(all))
	}
}

// testStarletteStreaming reads the first message of a StreamingResponse while the app waits,
// before sending the next, for the test's release: each message is flushed to the client.
func testStarletteStreaming(t *testing.T, base string) {
	const id = "stream1"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/stream?id="+id, nil)
	var resp *http.Response
	asgiWithin(t, 30*time.Second, "GET /stream: response headers while the app waits", func() error {
		var err error
		resp, err = testClient.Do(req)
		return err
	})
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || resp.ContentLength != -1 {
		t.Fatalf("GET /stream: %d, Content-Type %q, length %d; want 200, text/plain, streamed",
			resp.StatusCode, resp.Header.Get("Content-Type"), resp.ContentLength)
	}
	br := bufio.NewReader(resp.Body)
	var first string
	asgiWithin(t, 30*time.Second, "GET /stream: the first message while the app waits to send the second (not flushed?)", func() error {
		var err error
		first, err = br.ReadString('\n')
		return err
	})
	if first != "first\n" {
		t.Fatalf("GET /stream: first message %q, want %q", first, "first\n")
	}
	if r, b := post(t, base+"/release?id="+id, "text/plain", nil); r.StatusCode != 200 || string(b) != "released" {
		t.Fatalf("POST /release: %d %q", r.StatusCode, b)
	}
	var rest []byte
	asgiWithin(t, 30*time.Second, "GET /stream: the rest after the release", func() error {
		var err error
		rest, err = io.ReadAll(br)
		return err
	})
	if string(rest) != "second\nthird\n" {
		t.Errorf("GET /stream: after the release %q, want %q", rest, "second\nthird\n")
	}
}

// ---------------------------------------------------------------------------------------------
// FastAPI background tasks

// TestASGIFastAPIBackgroundTasks: the response of an endpoint with BackgroundTasks reaches the
// client while its first task is still blocked (on a file the test creates only after the
// response); then the tasks run, in order, the sync one in the thread pool.
func TestASGIFastAPIBackgroundTasks(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock()+`http://127.0.0.1:{PORT} {
	asgi asgi_fastapi_bg:app {
		venv {VENV}
		chdir {APPS}
		workers 1
		worker_connections 20
		timeout 10s
	}
}
`)
	waitStatus(t, c.URL+"/jobs/none", 200, 60*time.Second)
	dir := c.Dir
	schedule := func(t *testing.T, token string) {
		t.Helper()
		resp, b := post(t, c.URL+"/jobs/"+token+"?dir="+url.QueryEscape(dir), "application/json", nil)
		var out map[string]string
		if resp.StatusCode != 200 {
			t.Fatalf("POST /jobs/%s: %d %.300q", token, resp.StatusCode, b)
		}
		fwJSON(t, "POST /jobs/"+token, b, &out)
		if out["scheduled"] != token {
			t.Fatalf("POST /jobs/%s: %s", token, b)
		}
	}
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}
	release := func(token string) {
		if err := os.WriteFile(filepath.Join(dir, token+".go"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	schedule(t, "job1")
	// The async task waits for job1.go, which does not exist yet: the response came first.
	if exists("job1.async") || exists("job1.sync") {
		t.Fatalf("the tasks ran before the response was received")
	}
	release("job1")
	deadline := time.Now().Add(30 * time.Second)
	for !exists("job1.async") || !exists("job1.sync") {
		if time.Now().After(deadline) {
			t.Fatalf("background tasks did not finish 30s after their release (job1.async %v, job1.sync %v)", exists("job1.async"), exists("job1.sync"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for name, want := range map[string]string{"job1.async": "async job1", "job1.sync": "sync job1"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v, want %q", name, b, err, want)
		}
	}
	// The log is read once the tasks are over (see spec_requests_served_during_background_task).
	var status struct {
		Log []string `json:"log"`
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		asgiGetJSON(t, c.URL+"/jobs/job1", &status)
		if len(status.Log) == 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := "handler | async task started | async task done | sync task done in another thread"
	if got := strings.Join(status.Log, " | "); got != want {
		t.Errorf("job1 events: %q, want %q", got, want)
	}

	// The app may keep running after its response (that is how BackgroundTasks work): other
	// requests must be served meanwhile, not queued behind it on the same worker channel.
	asgiSpec(t, "requests_served_during_background_task", func(t *testing.T) {
		schedule(t, "job2")
		defer release("job2")
		code, b, err := tryGet(c.URL+"/jobs/job2", 20*time.Second)
		if err != nil || code != 200 {
			t.Fatalf("GET /jobs/job2 while job2's background task waits: %d %v %.200q, want 200 (the request was dispatched onto the channel whose app is still running its background task?)",
				code, err, b)
		}
		var st struct {
			Log []string `json:"log"`
		}
		fwJSON(t, "GET /jobs/job2", b, &st)
		if len(st.Log) < 1 || st.Log[0] != "handler" || len(st.Log) > 2 {
			t.Errorf("job2 events while its task waits: %q, want [handler] or [handler, async task started]", st.Log)
		}
	})
}

// ---------------------------------------------------------------------------------------------
// Django

// TestASGIDjango serves a minimal Django project (asgi_djangosite: no database, CSRF on)
// with django.core.asgi.get_asgi_application, at / and under handle_path /dj/*.
func TestASGIDjango(t *testing.T) {
	t.Parallel()
	block := `asgi asgi_djangosite.asgi:application {
			venv {VENV}
			chdir {APPS}
			workers 1
			buffer_body 64KiB
			env DJANGO_SETTINGS_MODULE asgi_djangosite.settings
		}`
	c := startCaddy(t, globalBlock()+`http://127.0.0.1:{PORT} {
	handle_path /dj/* {
		`+block+`
	}
	handle {
		`+block+`
	}
}
`)
	waitStatus(t, c.URL+"/sync", 200, 60*time.Second)

	type where struct {
		Kind        string  `json:"kind"`
		Path        string  `json:"path"`
		PathInfo    string  `json:"path_info"`
		ScriptName  string  `json:"script_name"`
		Absolute    string  `json:"absolute"`
		ReverseSync string  `json:"reverse_sync"`
		Query       *string `json:"query"`
		InLoop      bool    `json:"in_loop"`
		Thread      uint64  `json:"thread"`
	}
	var av, sv where
	asgiGetJSON(t, c.URL+"/async?q=caf%C3%A9", &av)
	if av.Kind != "async" || !av.InLoop || av.Path != "/async" || av.PathInfo != "/async" || av.ScriptName != "" ||
		av.Query == nil || *av.Query != "café" || av.ReverseSync != "/sync" || av.Absolute != c.URL+"/async?q=caf%C3%A9" {
		t.Errorf("GET /async (async def view): %+v", av)
	}
	asgiGetJSON(t, c.URL+"/sync", &sv)
	if sv.Kind != "sync" || sv.InLoop || sv.Path != "/sync" || sv.Thread == av.Thread {
		t.Errorf("GET /sync (def view, run by Django in a thread outside the event loop): in_loop %v, thread %d (async view's %d), path %q",
			sv.InLoop, sv.Thread, av.Thread, sv.Path)
	}

	// POST: the exempt view parses the form without a CSRF token; the protected one is
	// refused by CsrfViewMiddleware (so the exemption is what lets the first through).
	resp, b := post(t, c.URL+"/exempt", "application/x-www-form-urlencoded", []byte("a=1&b=caf%C3%A9&a=2"))
	var ex struct {
		Method      string              `json:"method"`
		ContentType string              `json:"content_type"`
		Form        map[string][]string `json:"form"`
		Length      int                 `json:"length"`
	}
	if resp.StatusCode != 200 {
		t.Fatalf("POST /exempt: %d %.300q", resp.StatusCode, b)
	}
	fwJSON(t, "POST /exempt", b, &ex)
	if ex.Method != "POST" || ex.ContentType != "application/x-www-form-urlencoded" || ex.Length != 19 ||
		fmt.Sprint(ex.Form) != "map[a:[1 2] b:[café]]" {
		t.Errorf("POST /exempt: %s", b)
	}
	if resp, b := post(t, c.URL+"/protected", "application/x-www-form-urlencoded", []byte("a=1")); resp.StatusCode != 403 {
		t.Errorf("POST /protected without a CSRF token: %d %.200q, want 403", resp.StatusCode, b)
	}
	// A body past buffer_body, streamed to Django's body reader.
	big := "f=" + strings.Repeat("x", 300<<10)
	resp, b = post(t, c.URL+"/exempt", "application/x-www-form-urlencoded", []byte(big))
	if resp.StatusCode != 200 {
		t.Fatalf("POST /exempt (300 KiB): %d %.300q", resp.StatusCode, b)
	}
	fwJSON(t, "POST /exempt (300 KiB)", b, &ex)
	if ex.Length != len(big) || len(ex.Form["f"]) != 1 || len(ex.Form["f"][0]) != len(big)-2 {
		t.Errorf("POST /exempt (300 KiB): length %d, want %d", ex.Length, len(big))
	}

	// Async views of one worker overlap on its event loop.
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, b, err := tryGet(c.URL+"/wait", 30*time.Second); err != nil || code != 200 {
				t.Errorf("GET /wait: %d %v %.200q", code, err, b)
			}
		}()
	}
	wg.Wait()
	var conc struct {
		Max int `json:"max_concurrent"`
	}
	asgiGetJSON(t, c.URL+"/wait", &conc)
	if conc.Max < 5 {
		t.Errorf("10 concurrent requests to an async view of one worker: at most %d ran at once, want >= 5", conc.Max)
	}

	// CommonMiddleware's APPEND_SLASH redirect, at the root.
	if resp, _ := get(t, c.URL+"/slashed"); resp.StatusCode != 301 || resp.Header.Get("Location") != "/slashed/" {
		t.Errorf("GET /slashed: %d Location %q, want 301 /slashed/", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Under handle_path /dj/*: root_path is Django's script prefix.
	var pv where
	asgiGetJSON(t, c.URL+"/dj/sync", &pv)
	if pv.ScriptName != "/dj" || pv.PathInfo != "/sync" || pv.ReverseSync != "/dj/sync" {
		t.Errorf("GET /dj/sync: SCRIPT_NAME %q PATH_INFO %q reverse('sync') %q, want /dj, /sync, /dj/sync", pv.ScriptName, pv.PathInfo, pv.ReverseSync)
	}
	// Django's ASGIRequest takes request.path from the scope's path and strips root_path from
	// it for path_info: it expects path to include root_path, as the spec says.
	asgiSpec(t, "path_includes_root_path", func(t *testing.T) {
		var v where
		asgiGetJSON(t, c.URL+"/dj/async?q=1", &v)
		if v.Path != "/dj/async" || v.Absolute != c.URL+"/dj/async?q=1" {
			t.Errorf("GET /dj/async: request.path %q, build_absolute_uri() %q; want /dj/async, %s/dj/async?q=1", v.Path, v.Absolute, c.URL)
		}
		if resp, _ := get(t, c.URL+"/dj/slashed"); resp.StatusCode != 301 || resp.Header.Get("Location") != "/dj/slashed/" {
			t.Errorf("GET /dj/slashed: %d Location %q, want 301 /dj/slashed/ (the APPEND_SLASH redirect must stay under the prefix)",
				resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	// The project's URL dj/inner starts with the mount prefix: /dj/dj/inner must reach it.
	asgiSpec(t, "prefix_stripped_once", func(t *testing.T) {
		var v map[string]any
		asgiGetJSON(t, c.URL+"/dj/dj/inner", &v)
		if v["path"] != "/dj/dj/inner" || v["path_info"] != "/dj/inner" {
			t.Errorf("GET /dj/dj/inner: request.path %v, path_info %v; want /dj/dj/inner, /dj/inner", v["path"], v["path_info"])
		}
	})
}
