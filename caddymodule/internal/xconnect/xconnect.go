// Package xconnect turns on extended CONNECT (RFC 8441) in Go's HTTP/2 server, which the
// asgi handler needs for WebSockets over HTTP/2. net/http reads GODEBUG=http2xconnect
// once, in its own init, and keeps it off by default; this package's init runs first (Go
// initializes ready packages in import-path order, and this one needs only os and strings),
// so it can add the setting. An http2xconnect value the user set is left as it is.
package xconnect

import (
	"os"
	"strings"
)

func init() {
	godebug := os.Getenv("GODEBUG")
	if strings.Contains(godebug, "http2xconnect=") {
		return
	}
	if godebug != "" {
		godebug += ","
	}
	os.Setenv("GODEBUG", godebug+"http2xconnect=1")
}
