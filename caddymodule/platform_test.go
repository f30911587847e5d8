package caddymodule

import "testing"

func TestUnsupportedOS(t *testing.T) {
	for _, goos := range []string{"linux", "darwin", "freebsd"} {
		if err := unsupportedOS(goos, "wsgi"); err != nil {
			t.Errorf("%s: %v", goos, err)
		}
	}
	want := "the asgi handler needs a Unix-like system: use WSL or a Linux container"
	if err := unsupportedOS("windows", "asgi"); err == nil || err.Error() != want {
		t.Errorf("windows: %v, want %q", err, want)
	}
}
