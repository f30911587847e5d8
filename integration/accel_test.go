//go:build linux

package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// accelSite is a Caddyfile block serving testdata/apps/sendfile.py under prefix with
// directive (wsgi or asgi) and one worker that takes one request at a time, behind
// Caddy's intercept: X-Accel-Redirect (a path under {TMP}/private) and X-Sendfile (an
// absolute path, which must be under {TMP}/private) become file_server responses. This
// is the Caddyfile docs/recipes.md documents.
func accelSite(prefix, directive, spec, one string) string {
	return fmt.Sprintf(`
	handle_path %[1]s/* {
		intercept {
			@accel header X-Accel-Redirect *
			handle_response @accel {
				rewrite * {resp.header.X-Accel-Redirect}
				method * GET
				header -X-Accel-Redirect
				file_server {
					root {TMP}/private
				}
			}
			@sendfile header X-Sendfile *
			handle_response @sendfile {
				rewrite * {resp.header.X-Sendfile}
				uri strip_prefix {TMP}/private
				method * GET
				header -X-Sendfile
				file_server {
					root {TMP}/private
				}
			}
		}
		%[2]s %[3]s {
			python {PYTHON}
			chdir {APPS}
			workers 1
			%[4]s
			env PRIVATE_DIR {TMP}/private
		}
	}
`, prefix, directive, spec, one)
}

// TestXAccelRedirect: with wsgi and with asgi, an app's X-Accel-Redirect or X-Sendfile
// answer is replaced by the file, sent by Caddy's file_server: the app's own headers
// stay, the internal header does not reach the client, ranges and ETags work, nothing
// outside the private root is served, and the worker is free while a client is still
// reading a large file.
func TestXAccelRedirect(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, globalBlock()+"http://127.0.0.1:{PORT} {"+
		accelSite("/wsgi", "wsgi", "sendfile", "threads 1")+
		accelSite("/asgi", "asgi", "sendfile:asgi_app", "max_concurrency 1")+"}\n")
	private := filepath.Join(c.Dir, "private")
	if err := os.MkdirAll(private, 0o755); err != nil {
		t.Fatal(err)
	}
	small := []byte("0123456789abcdefghij protected content\n")
	big := bytes.Repeat([]byte("0123456789abcdef"), 4<<20) // 64 MiB: more than the socket buffers hold
	for name, data := range map[string][]byte{"small.txt": small, "big.bin": big} {
		if err := os.WriteFile(filepath.Join(private, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "secret.txt"), []byte("outside the root"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, app := range []string{"wsgi", "asgi"} {
		base := c.URL + "/" + app
		waitStatus(t, base+"/ping", 200, 30*time.Second)
		for _, how := range []string{"accel", "sendfile"} {
			what := app + " " + how
			url := base + "/" + how + "?f=small.txt"
			resp, body := get(t, url)
			if resp.StatusCode != 200 || !bytes.Equal(body, small) {
				t.Fatalf("%s: %d %q, want 200 with the file", what, resp.StatusCode, body)
			}
			if resp.Header.Get("X-Accel-Redirect") != "" || resp.Header.Get("X-Sendfile") != "" {
				t.Errorf("%s: the internal header reached the client: %v", what, resp.Header)
			}
			if resp.Header.Get("X-App") != "decided" || resp.Header.Get("Content-Disposition") != `attachment; filename="small.txt"` ||
				resp.Header.Get("Content-Type") != "application/octet-stream" {
				t.Errorf("%s: the app's headers were lost: %v", what, resp.Header)
			}
			etag := resp.Header.Get("Etag")
			if etag == "" || resp.Header.Get("Last-Modified") == "" || resp.Header.Get("Accept-Ranges") != "bytes" {
				t.Fatalf("%s: no ETag, Last-Modified or Accept-Ranges from file_server: %v", what, resp.Header)
			}

			resp, body = do(t, "GET", url, map[string]string{"Range": "bytes=5-14"}, nil)
			if resp.StatusCode != 206 || string(body) != string(small[5:15]) || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 5-14/%d", len(small)) {
				t.Errorf("%s: Range bytes=5-14: %d %q %q", what, resp.StatusCode, body, resp.Header.Get("Content-Range"))
			}
			resp, body = do(t, "GET", url, map[string]string{"If-None-Match": etag}, nil)
			if resp.StatusCode != 304 || len(body) != 0 {
				t.Errorf("%s: If-None-Match %s: %d %q, want 304", what, etag, resp.StatusCode, body)
			}
			resp, body = do(t, "HEAD", url, nil, nil)
			if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != int64(len(small)) {
				t.Errorf("%s: HEAD: %d, %d bytes, Content-Length %d", what, resp.StatusCode, len(body), resp.ContentLength)
			}
			resp, body = do(t, "POST", url, nil, strings.NewReader("form=1"))
			if resp.StatusCode != 200 || !bytes.Equal(body, small) {
				t.Errorf("%s: POST (the app decides, Caddy sends the file as for a GET): %d %q", what, resp.StatusCode, body)
			}
			for _, escape := range []string{"../secret.txt", "..%2F..%2Fsecret.txt", "missing.txt"} {
				resp, body = get(t, base+"/"+how+"?f="+escape)
				if resp.StatusCode != 404 || bytes.Contains(body, []byte("outside the root")) {
					t.Errorf("%s: f=%s: %d %q, want 404", what, escape, resp.StatusCode, body)
				}
			}
		}

		// A client that stops reading a 64 MiB download holds Caddy's file_server, not
		// the one worker: the next request to the app is answered meanwhile.
		conn, err := net.Dial("tcp", c.URL[len("http://"):])
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET /%s/accel?f=big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", app)
		br := bufio.NewReader(conn)
		stalled, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: big download: %v", app, err)
		}
		if stalled.StatusCode != 200 || stalled.ContentLength != int64(len(big)) {
			t.Fatalf("%s: big download: %d, Content-Length %d", app, stalled.StatusCode, stalled.ContentLength)
		}
		if _, err := io.ReadFull(stalled.Body, make([]byte, 1<<16)); err != nil {
			t.Fatalf("%s: big download: %v", app, err)
		}
		code, b, err := tryGet(base+"/ping", 20*time.Second)
		if err != nil || code != 200 || string(b) != "pong" {
			t.Errorf("%s: while a download is stalled, the app's one worker did not answer: %d %q %v", app, code, b, err)
		}
		// The download is whole once the client reads again.
		n, err := io.Copy(io.Discard, stalled.Body)
		if err != nil || n != int64(len(big))-1<<16 {
			t.Errorf("%s: the rest of the big download: %d bytes, %v", app, n, err)
		}
		conn.Close()
	}
}
