package workerpool

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseEnvFile(t *testing.T) {
	text := "\ufeff# settings\n" +
		"PLAIN=value\n" +
		"  SPACED = spaced value  \n" +
		"export EXPORTED=yes\n" +
		"exported_lower=1\n" +
		"EMPTY=\n" +
		"COMMENTED=abc # a comment\n" +
		"HASH=abc#not-a-comment\n" +
		"SINGLE='literal $HOME \\n # kept'\n" +
		"DOUBLE=\"tab\\tnl\\nq\\\" bs\\\\ dollar\\$ other\\d\" # comment\n" +
		"MULTI=\"line one\n" +
		"line two\"\n" +
		"URL=postgres://u:p@db:5432/app?sslmode=require\n" +
		"EQUALS=a=b=c\r\n" +
		"PLAIN=overridden\n" +
		"\n" +
		"   # indented comment\n" +
		"exportNOT=plain-name\n"
	got, err := ParseEnvFile(text)
	if err != nil {
		t.Fatal(err)
	}
	want := []EnvFileVar{
		{"PLAIN", "value"}, {"SPACED", "spaced value"}, {"EXPORTED", "yes"}, {"exported_lower", "1"},
		{"EMPTY", ""}, {"COMMENTED", "abc"}, {"HASH", "abc#not-a-comment"},
		{"SINGLE", "literal $HOME \\n # kept"},
		{"DOUBLE", "tab\tnl\nq\" bs\\ dollar$ other\\d"},
		{"MULTI", "line one\nline two"},
		{"URL", "postgres://u:p@db:5432/app?sslmode=require"},
		{"EQUALS", "a=b=c"}, {"PLAIN", "overridden"}, {"exportNOT", "plain-name"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

func TestParseEnvFileErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"A=1\nB\n", "line 2: expected KEY=VALUE"},
		{"A=1\n\n1A=2\n", `line 3: "1A" is not a variable name`},
		{"MY-VAR=1", `line 1: "MY-VAR" is not a variable name`},
		{"=value", `line 1: "" is not a variable name`},
		{"A=1\nB=\"open\nstill open\n", `line 2: B has no closing "`},
		{"C='x' trailing", `line 1: C has "trailing" after its closing quote`},
		{"D=a\x00b", "line 1: the value of D holds a NUL byte"},
	} {
		_, err := ParseEnvFile(tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.text, err, tc.want)
		}
	}
}

func TestLoadEnvFiles(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.env"), filepath.Join(dir, "b.env")
	os.WriteFile(a, []byte("X=1\nY=from-a\n"), 0o600)
	os.WriteFile(b, []byte("Y=from-b\n"), 0o600)
	vars, err := LoadEnvFiles([]string{a, b})
	if err != nil || !reflect.DeepEqual(vars, []EnvFileVar{{"X", "1"}, {"Y", "from-a"}, {"Y", "from-b"}}) {
		t.Errorf("LoadEnvFiles: %v %v", vars, err)
	}
	if _, err := LoadEnvFiles([]string{filepath.Join(dir, "missing.env")}); err == nil || !strings.Contains(err.Error(), "missing.env") {
		t.Errorf("missing file: %v", err)
	}
	os.WriteFile(b, []byte("OK=1\nbroken line\n"), 0o600)
	if _, err := LoadEnvFiles([]string{a, b}); err == nil || !strings.Contains(err.Error(), b+": line 2:") {
		t.Errorf("malformed file: %v", err)
	}
	// A pool refuses a bad file at New (Caddy's Provision), before any worker starts.
	if _, err := New(Config{App: "app:application", EnvFiles: []string{b}}); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("New with a malformed env file: %v", err)
	}
}

// TestSpawnEnvOrder: inherited < env files (in order) < Env, read anew at each call.
func TestSpawnEnvOrder(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, ".env")
	os.WriteFile(f, []byte("FROM_FILE=1\nOVERRIDE=file\nHOME=/from/file\n"), 0o600)
	p, err := New(Config{App: "app:application", EnvFiles: []string{f}, Env: map[string]string{"OVERRIDE": "env"}})
	if err != nil {
		t.Fatal(err)
	}
	env, err := p.spawnEnv()
	if err != nil {
		t.Fatal(err)
	}
	look := func(env []string, k string) string {
		for _, kv := range env {
			if strings.HasPrefix(kv, k+"=") {
				return kv[len(k)+1:]
			}
		}
		return "<unset>"
	}
	if look(env, "FROM_FILE") != "1" || look(env, "OVERRIDE") != "env" || look(env, "HOME") != "/from/file" {
		t.Errorf("spawnEnv: FROM_FILE=%s OVERRIDE=%s HOME=%s", look(env, "FROM_FILE"), look(env, "OVERRIDE"), look(env, "HOME"))
	}
	os.WriteFile(f, []byte("FROM_FILE=2\n"), 0o600)
	env, _ = p.spawnEnv()
	if look(env, "FROM_FILE") != "2" || look(env, "OVERRIDE") != "env" {
		t.Errorf("after an edit: FROM_FILE=%s OVERRIDE=%s", look(env, "FROM_FILE"), look(env, "OVERRIDE"))
	}
	os.Remove(f)
	if _, err := p.spawnEnv(); err == nil {
		t.Error("spawnEnv with the file gone: no error")
	}
}
