package pyruntime

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// interpreters returns the Pythons the runtime must work on: $WSGI_TEST_PYTHONS
// (space separated), else python3 plus the pyenv 3.9 and 3.13 builds of this machine.
func interpreters(t *testing.T) []string {
	if env := os.Getenv("WSGI_TEST_PYTHONS"); env != "" {
		return strings.Fields(env)
	}
	found := []string{"python3"}
	for _, v := range []string{"3.9", "3.13"} {
		matches, _ := filepath.Glob(filepath.Join(pyenvRoot(), "versions", v+".*", "bin", "python3"))
		if len(matches) == 0 {
			t.Fatalf("no Python %s found under %s; set WSGI_TEST_PYTHONS", v, pyenvRoot())
		}
		found = append(found, matches[len(matches)-1])
	}
	return found
}

func pyenvRoot() string {
	if r := os.Getenv("PYENV_ROOT"); r != "" {
		return r
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".pyenv")
}

// TestPythonRuntime runs the runtime's own unit tests (codec, property test of the
// decoder, end-to-end worker processes) under every supported interpreter.
func TestPythonRuntime(t *testing.T) {
	for _, py := range interpreters(t) {
		t.Run(filepath.Base(filepath.Dir(filepath.Dir(py)))+"/"+filepath.Base(py), func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(py, "-m", "unittest", "discover", "-s", "tests")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s: %v\n%s", py, err, out.String())
			}
			if !strings.Contains(out.String(), "OK") {
				t.Fatalf("unexpected unittest output:\n%s", out.String())
			}
			t.Logf("%s: %s", py, lastLine(out.String()))
		})
	}
}

// TestBootstrapLoadsSource checks the embedded source is the runtime Bootstrap expects.
func TestBootstrapLoadsSource(t *testing.T) {
	if !bytes.Contains(Source, []byte("def main(argv)")) {
		t.Fatal("embedded runtime has no main(argv)")
	}
	// The bootstrap with no arguments must load the module and fail in main's argv check.
	cmd := exec.Command("python3", "-c", Bootstrap)
	cmd.Stdin = bytes.NewReader(Source)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("bootstrap without arguments: %v (want exit status 2)\n%s", err, out)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
