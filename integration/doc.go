//go:build linux

// Package integration holds the end-to-end tests of caddy-wsgi: they build a caddy binary with
// the module (or use $CADDY_BIN), start it on free loopback ports with a Caddyfile, and talk to
// real Python worker processes through it. Everything lives in _test.go files.
package integration
