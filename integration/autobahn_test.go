package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// autobahnNonStrict are the Autobahn cases where NON-STRICT is accepted, each because
// RFC 6455 leaves room (see the README): none today.
var autobahnNonStrict = map[string]string{}

// autobahnDir is where scripts/install-autobahn.sh put wstest.
func autobahnDir() string {
	if d := os.Getenv("AUTOBAHN_DIR"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "caddy-wsgi", "autobahn-25.10.1")
}

// TestAutobahn runs Autobahn|Testsuite's fuzzing client (every case but 9.*, the limits
// and performance cases, which bench/autobahn.sh runs) against an ASGI echo app behind
// caddy, compression cases (12.*, 13.*) included, and requires every case to pass.
func TestAutobahn(t *testing.T) {
	t.Parallel()
	dir := autobahnDir()
	pyFile, err := os.ReadFile(filepath.Join(dir, ".python"))
	if err != nil {
		t.Fatalf("Autobahn|Testsuite is not installed in %s (%v): run scripts/install-autobahn.sh (make test does)", dir, err)
	}
	c := startCaddy(t, globalBlock()+`http://127.0.0.1:{PORT} {
	asgi asgi_echo:app {
		python {VENV}/bin/python
		chdir {APPS}
		workers 1
	}
}
`)
	report := filepath.Join(c.Dir, "autobahn")
	spec, _ := json.Marshal(map[string]any{
		"outdir":        report,
		"servers":       []map[string]string{{"agent": "caddy", "url": fmt.Sprintf("ws://127.0.0.1:%d/", c.Port)}},
		"cases":         []string{"*"},
		"exclude-cases": []string{"9.*"},
	})
	specPath := filepath.Join(c.Dir, "fuzzingclient.json")
	if err := os.WriteFile(specPath, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(strings.TrimSpace(string(pyFile)), filepath.Join(dir, "bin", "wstest"), "-m", "fuzzingclient", "-s", specPath)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), "PYTHONPATH="+dir)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("wstest: %v\n%s", err, tail(string(out), 40))
	}
	t.Logf("wstest ran in %v", time.Since(start).Round(time.Second))
	var index map[string]map[string]struct {
		Behavior      string `json:"behavior"`
		BehaviorClose string `json:"behaviorClose"`
	}
	b, err := os.ReadFile(filepath.Join(report, "index.json"))
	if err == nil {
		err = json.Unmarshal(b, &index)
	}
	if err != nil {
		t.Fatalf("Autobahn report: %v\n%s", err, tail(string(out), 40))
	}
	results := index["caddy"]
	tally := map[string]int{}
	var bad []string
	for id, r := range results {
		tally[r.Behavior]++
		ok := r.Behavior == "OK" || r.Behavior == "INFORMATIONAL" ||
			r.Behavior == "NON-STRICT" && autobahnNonStrict[id] != ""
		okClose := r.BehaviorClose == "OK" || r.BehaviorClose == "INFORMATIONAL"
		if !ok || !okClose {
			bad = append(bad, fmt.Sprintf("%s: %s (close %s)", id, r.Behavior, r.BehaviorClose))
		}
	}
	t.Logf("Autobahn cases: %d, by verdict %v", len(results), tally)
	if len(results) < 400 {
		t.Errorf("only %d cases ran", len(results))
	}
	if _, ran := results["9.1.1"]; ran {
		t.Errorf("9.* ran")
	}
	if _, ran := results["13.7.18"]; !ran {
		t.Errorf("the compression cases did not run")
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("%d cases failed (reports in %s):\n%s\ncaddy log:\n%s", len(bad), report, strings.Join(bad, "\n"), tail(c.Logs(), 20))
	}
}
