//go:build linux

package integration

// Bad input from apps (testdata/apps/badapps.py): a status or header the server must not
// send, a body that is not an iterable of bytes, start_response misuse, a Content-Length
// that lies. Each case must give a log line and either a well-formed response (500, or for
// a Content-Length that is too short the declared bytes only) or an aborted connection,
// and never a corrupted stream: the next request on the SAME keep-alive connection gets
// its own, correct response (or the connection was closed and a new one works).

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

type badCase struct {
	path string
	// want: "500"   a well-formed 500 (an abort before the status line is tolerated)
	//       "abort" the response must not end cleanly (status line may be sent)
	//       "short" 200 with exactly the declared bytes "HELLO", clean
	//       "many"  200 with every header, or a 500
	want string
	log  string // a substring of the error/warn log line for this request
}

var badCases = []badCase{
	{"/status-nonlatin", "500", "not latin-1"},
	{"/status-garbage", "500", "status"},
	{"/status-1xx", "500", "not a final HTTP status"},
	{"/header-value-nonlatin", "500", "not latin-1"},
	{"/header-name-nonlatin", "500", "not latin-1"},
	{"/header-value-crlf", "500", "X-Bad"},
	{"/header-value-lf", "500", "X-Bad"},
	{"/header-value-cr", "500", "X-Bad"},
	{"/header-value-nul", "500", "NUL"},
	{"/header-name-crlf", "500", "X-Bad"},
	{"/header-name-colon", "500", "X-Injected"},
	{"/header-name-space", "500", "X Injected"},
	{"/header-not-str", "500", "not str"},
	{"/header-not-pair", "500", "X-Bad"},
	{"/many-headers?n=10000", "many", ""},
	{"/return-none", "500", "NoneType"},
	{"/return-int", "500", "int"},
	{"/gen-str", "500", "must be bytes, not str"},
	{"/gen-str-after-bytes", "abort", "must be bytes, not str"},
	{"/list-of-str", "500", "str"},
	{"/no-start-response", "500", "start_response"},
	{"/no-start-response-gen", "500", "start_response"},
	{"/start-twice", "500", "start_response() called twice"},
	{"/cl-too-long", "abort", "fewer bytes than its Content-Length"},
	{"/cl-too-long-stream", "abort", "fewer bytes than its Content-Length"},
	{"/cl-too-short", "short", "more bytes than its Content-Length"},
	{"/cl-too-short-stream", "short", "more bytes than its Content-Length"},
	{"/cl-invalid", "500", "Content-Length"},
	{"/cl-negative", "500", "Content-Length"},
	{"/cl-duplicate", "500", "Content-Length"},
}

// isConnClosed reports whether err means the peer closed (or reset) the connection.
func isConnClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// goodOnConn sends GET /good on conn and reads the answer. closed: the server had closed
// the connection (allowed after a bad response); otherwise the answer must be right.
func goodOnConn(conn net.Conn, br *bufio.Reader, tok string) (closed bool, err error) {
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, werr := io.WriteString(conn, "GET /good?tok="+tok+" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); werr != nil {
		if isConnClosed(werr) {
			return true, nil
		}
		return false, fmt.Errorf("writing the follow-up request: %v", werr)
	}
	if _, perr := br.Peek(1); perr != nil {
		if isConnClosed(perr) {
			return true, nil
		}
		return false, fmt.Errorf("waiting for the follow-up response: %v", perr)
	}
	resp, rerr := http.ReadResponse(br, &http.Request{Method: "GET"})
	if rerr != nil {
		buf, _ := br.Peek(br.Buffered())
		return false, fmt.Errorf("the follow-up response does not parse (%v); stream: %.300q", rerr, buf)
	}
	body, berr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if berr != nil || resp.StatusCode != 200 || string(body) != "good-"+tok {
		return false, fmt.Errorf("follow-up response: %d %q %v, want 200 %q", resp.StatusCode, body, berr, "good-"+tok)
	}
	return false, nil
}

func TestBadAppsKeepAlive(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, wsgiSite(localSite, "badapps", "workers 2", "threads 2"))
	waitStatus(t, c.URL+"/good?tok=up", 200, 20*time.Second)

	for _, tc := range badCases {
		tc := tc
		name := strings.TrimPrefix(strings.SplitN(tc.path, "?", 2)[0], "/")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			id := token("bad")
			sep := "?"
			if strings.Contains(tc.path, "?") {
				sep = "&"
			}
			uri := tc.path + sep + "id=" + id
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.Port), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReaderSize(conn, 64<<10)
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.WriteString(conn, "GET "+uri+" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			var (
				resp     *http.Response
				body     []byte
				bodyErr  error
				abortedH bool // no (parsable) status line: the connection was aborted
			)
			resp, err = http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				if !isConnClosed(err) {
					buf, _ := br.Peek(br.Buffered())
					t.Fatalf("the response to %s does not parse: %v; stream %.300q", uri, err, buf)
				}
				abortedH = true
			} else {
				body, bodyErr = io.ReadAll(resp.Body)
				resp.Body.Close()
				if bodyErr != nil && !isConnClosed(bodyErr) {
					t.Errorf("reading the body of %s: %v", uri, bodyErr)
				}
			}
			outcome := "aborted before the status line"
			if !abortedH {
				outcome = fmt.Sprintf("%d, %d body bytes %.80q, body error %v, %d headers", resp.StatusCode, len(body), body, bodyErr, len(resp.Header))
			}
			t.Logf("%s: %s", uri, outcome)

			if !abortedH {
				for k := range resp.Header {
					if strings.Contains(strings.ToLower(k), "injected") {
						t.Errorf("the response carries an injected header %q", k)
					}
				}
				if strings.Contains(string(body), "should-not-be-sent") {
					t.Errorf("the app's body was sent: %q", body)
				}
			}
			switch tc.want {
			case "500":
				if !abortedH && (resp.StatusCode != 500 || bodyErr != nil) {
					t.Errorf("%s: %s; want a well-formed 500 (or an aborted connection)", uri, outcome)
				}
			case "abort":
				if !abortedH && bodyErr == nil {
					t.Errorf("%s: the response ended cleanly (%s); want an aborted response", uri, outcome)
				}
			case "short":
				if abortedH || resp.StatusCode != 200 || bodyErr != nil || string(body) != "HELLO" || resp.ContentLength != 5 {
					t.Errorf("%s: %s; want 200 with Content-Length 5 and exactly \"HELLO\"", uri, outcome)
				}
			case "many":
				if abortedH {
					t.Errorf("%s: aborted; want 200 with the headers, or a 500", uri)
				} else if resp.StatusCode == 200 {
					n := 0
					for k := range resp.Header {
						if strings.HasPrefix(k, "X-H-") {
							n++
						}
					}
					if n != 10000 || string(body) != "many-headers-body" || resp.Header.Get("X-H-9999") != "value-9999" {
						t.Errorf("%s: 200 with %d of the 10000 headers and body %.80q", uri, n, body)
					}
				} else if resp.StatusCode != 500 {
					t.Errorf("%s: %s; want 200 or 500", uri, outcome)
				}
			}

			// the log line
			wantLog := tc.want != "many" || (resp != nil && resp.StatusCode != 200)
			if wantLog {
				lines := waitLogLine(c, 5*time.Second, func(l string) bool {
					return strings.Contains(l, id) && isLevel(l, "error", "warn") && strings.Contains(l, tc.log)
				})
				if len(lines) == 0 {
					mine := logLinesMatching(c, func(l string) bool { return strings.Contains(l, id) })
					t.Errorf("no error/warn log line for %s containing %q; its lines: %q", uri, tc.log, mine)
				}
			}

			// the same connection: the next response must be the right one, or the
			// connection is closed
			closed, ferr := goodOnConn(conn, br, id)
			if ferr != nil {
				t.Errorf("after %s (%s) on the same keep-alive connection: %v", uri, outcome, ferr)
			}
			if closed {
				if tc.want == "short" || (tc.want == "500" && !abortedH && resp.StatusCode == 500 && !resp.Close) {
					t.Logf("note: the connection was closed after a complete %s response without Connection: close", uri)
				}
				nc, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.Port), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				if closed2, err := goodOnConn(nc, bufio.NewReader(nc), id+"n"); closed2 || err != nil {
					t.Errorf("a new connection after %s: closed %v err %v", uri, closed2, err)
				}
			}
		})
	}
	t.Cleanup(func() {
		if c.Exited() {
			t.Errorf("caddy exited during the bad-app cases")
		}
	})
}
