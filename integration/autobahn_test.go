//go:build linux

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
// RFC 6455 leaves room (see the README).
var autobahnNonStrict = map[string]string{}

func init() {
	// A valid message, then a bad frame: the app's echo of the message travels through the
	// worker while Caddy fails the connection at once, so the echo may be cut off. The
	// RFC requires failing the connection, not waiting for the application.
	// Which of these cases lose the race varies from run to run.
	for _, id := range []string{"3.2", "3.3", "3.4", "3.5", "3.6", "3.7", "4.1.3", "4.1.4", "4.1.5", "4.2.3", "4.2.4", "4.2.5"} {
		autobahnNonStrict[id] = "echo cut off by the failure"
	}
	// Fragments of a ping-interleaved message: same race with the echo of the first message.
	autobahnNonStrict["5.15"] = "echo cut off by the failure"
	// Invalid UTF-8 inside one frame sent in chops: Caddy checks a frame when it has all of
	// it; fail-fast within a frame is not required (RFC 6455 §8.1).
	autobahnNonStrict["6.4.3"] = "UTF-8 checked per frame"
	autobahnNonStrict["6.4.4"] = "UTF-8 checked per frame"
}

// autobahnSlow are the compression cases with the largest messages, left to
// bench/autobahn.sh: they are three quarters of the run's time (Autobahn's Python side
// is the bottleneck), and smaller cases of each group exercise the same code.
var autobahnSlow = []string{"12.*.9", "12.*.10", "12.*.13", "12.*.14", "12.*.15", "12.*.16", "12.*.17", "12.*.18",
	"13.*.9", "13.*.10", "13.*.13", "13.*.14", "13.*.15", "13.*.16", "13.*.17", "13.*.18"}

// autobahnDir is where scripts/install-autobahn.sh put wstest.
func autobahnDir() string {
	if d := os.Getenv("AUTOBAHN_DIR"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "caddy-wsgi", "autobahn-25.10.1")
}

// TestAutobahn runs Autobahn|Testsuite's fuzzing client against an ASGI echo app behind
// caddy: every case but 9.* (limits and performance) and the slowest compression cases,
// which bench/autobahn.sh runs, and requires every case to pass (NON-STRICT only where
// listed above).
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
		"exclude-cases": append([]string{"9.*"}, autobahnSlow...),
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
	if len(results) < 330 {
		t.Errorf("only %d cases ran", len(results))
	}
	if _, ran := results["9.1.1"]; ran {
		t.Errorf("9.* ran")
	}
	if _, ran := results["13.7.12"]; !ran {
		t.Errorf("the compression cases did not run")
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("%d cases failed (reports in %s):\n%s\ncaddy log:\n%s", len(bad), report, strings.Join(bad, "\n"), tail(c.Logs(), 20))
	}
}
