package xconnect

import (
	"os"
	"strings"
	"testing"
)

// The package's init ran before this test: extended CONNECT is on unless the environment
// of the test process set it already.
func TestGODEBUG(t *testing.T) {
	if !strings.Contains(os.Getenv("GODEBUG"), "http2xconnect=") {
		t.Fatalf("GODEBUG = %q, want http2xconnect set", os.Getenv("GODEBUG"))
	}
}
