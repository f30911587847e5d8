package caddymodule

import (
	"fmt"
	"runtime"
)

// platformError refuses to run the handler kind ("wsgi", "asgi") on Windows: workers need
// socketpairs, descriptor passing, fork and signals. The module still compiles and
// registers there, so a Caddy build that includes it among other plugins does not break.
func platformError(kind string) error {
	return unsupportedOS(runtime.GOOS, kind)
}

func unsupportedOS(goos, kind string) error {
	if goos != "windows" {
		return nil
	}
	return fmt.Errorf("the %s handler needs a Unix-like system: use WSL or a Linux container", kind)
}
