package pyruntime

import (
	"bytes"
	"encoding/json"
	"io/fs"
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

// TestBootstrapLoadsSource checks the embedded bundle is the runtime Bootstrap expects.
func TestBootstrapLoadsSource(t *testing.T) {
	var sources map[string]string
	if err := json.Unmarshal(Source, &sources); err != nil {
		t.Fatalf("bundle: %v", err)
	}
	if !strings.Contains(sources["caddy_wsgi/boot.py"], "def main(argv)") {
		t.Fatal("embedded runtime has no caddy_wsgi/boot.py with main(argv)")
	}
	if !strings.Contains(sources["caddy_wsgi/importer.py"], "def install(bundle)") {
		t.Fatal("embedded runtime has no caddy_wsgi/importer.py with install(bundle)")
	}
	// The bootstrap with no arguments must load the package and fail in main's argv check.
	cmd := exec.Command("python3", "-c", Bootstrap)
	cmd.Stdin = bytes.NewReader(Source)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("bootstrap without arguments: %v (want exit status 2)\n%s", err, out)
	}
}

// TestEmbedHoldsEveryModule checks the //go:embed patterns match the package on disk: a
// module in a new subdirectory needs a new pattern.
func TestEmbedHoldsEveryModule(t *testing.T) {
	var sources map[string]string
	if err := json.Unmarshal(Source, &sources); err != nil {
		t.Fatalf("bundle: %v", err)
	}
	err := filepath.WalkDir("caddy_wsgi", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".py" {
			return err
		}
		if _, ok := sources[filepath.ToSlash(path)]; !ok {
			t.Errorf("%s is not embedded: add its directory to the //go:embed patterns", path)
		}
		delete(sources, filepath.ToSlash(path))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for path := range sources {
		t.Errorf("embedded %s is not on disk", path)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
