package caddymodule

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

// goldenSeparator splits a file of testdata/adapt into its Caddyfile and the JSON that
// Caddy's adapter must make of it (the layout of Caddy's own caddytest adapt tests).
const goldenSeparator = "\n----------\n"

// TestCaddyfileAdaptGolden adapts every testdata/adapt/*.caddyfiletest and compares the
// JSON with the expected one. UPDATE_GOLDEN=1 rewrites the expected JSON.
func TestCaddyfileAdaptGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "adapt", "*.caddyfiletest"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".caddyfiletest"), func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			input, want, ok := strings.Cut(string(raw), goldenSeparator)
			if !ok {
				t.Fatalf("%s: no %q line between the Caddyfile and its JSON", path, strings.TrimSpace(goldenSeparator))
			}
			got := adaptIndented(t, input)
			if os.Getenv("UPDATE_GOLDEN") != "" {
				if err := os.WriteFile(path, []byte(input+goldenSeparator+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("%s: adapted JSON differs (UPDATE_GOLDEN=1 rewrites it after a deliberate change)\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
}

// TestCaddyfileAdaptErrors: a bad Caddyfile is refused at load, with its line number and
// a reason.
func TestCaddyfileAdaptErrors(t *testing.T) {
	for name, tc := range map[string]struct{ input, want string }{
		"unknown option":   {":8080 {\n\twsgi app:application {\n\t\tworkerz 4\n\t}\n}\n", "Caddyfile:3"},
		"bad worker class": {":8080 {\n\twsgi app:application {\n\t\tworker_class eventlet\n\t}\n}\n", "Caddyfile:3"},
		"bad duration":     {":8080 {\n\n\twsgi app:application {\n\t\ttimeout soon\n\t}\n}\n", "Caddyfile:4"},
		"asgi lifespan":    {":8080 {\n\tasgi main:app {\n\t\tlifespan sometimes\n\t}\n}\n", "Caddyfile:3"},
		"handoff argument": {"{\n\tservers {\n\t\tlistener_wrappers {\n\t\t\twsgi_handoff now\n\t\t}\n\t}\n}\n:8080\n", "Caddyfile:4"},
	} {
		_, _, err := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}.Adapt([]byte(tc.input), map[string]any{"filename": "Caddyfile"})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %s", name, err, tc.want)
		}
	}
}

func adaptIndented(t *testing.T, input string) string {
	t.Helper()
	out, warnings, err := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}.Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	for _, w := range warnings {
		t.Logf("warning: %s:%d: %s", w.File, w.Line, w.Message)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		t.Fatal(err)
	}
	return buf.String() + "\n"
}
