package caddymodule

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func parse(t *testing.T, input string) (*WSGI, error) {
	t.Helper()
	m := new(WSGI)
	err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
	return m, err
}

func TestUnmarshalCaddyfile(t *testing.T) {
	m, err := parse(t, `wsgi mysite.wsgi:application {
		python /usr/bin/python3.12
		venv /srv/venv
		chdir /srv/app
		pythonpath /a /b
		env A 1
		env B "two words"
		workers 4
		threads 2
		queue_timeout 5s
		max_queue 10
		buffer_body 2MiB
		script_name /app
		boot_timeout 1m
		graceful_timeout 10s
	}`)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(m)
	want := `{"app":"mysite.wsgi:application","python":"/usr/bin/python3.12","venv":"/srv/venv","chdir":"/srv/app","pythonpath":["/a","/b"],"env":{"A":"1","B":"two words"},"workers":4,"threads":2,"queue_timeout":5000000000,"max_queue":10,"buffer_body":2097152,"script_name":"/app","boot_timeout":60000000000,"graceful_timeout":10000000000}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestUnmarshalCaddyfileErrorsNameTheLine(t *testing.T) {
	for input, want := range map[string]string{
		"wsgi foo:":                                   "malformed app spec",
		"wsgi :app":                                   "malformed app spec",
		"wsgi foo:bar(":                               "malformed app spec",
		"wsgi":                                        "needs an app",
		"wsgi a b":                                    "wrong argument count",
		"wsgi app {\n\n  workers zero\n}":             "Testfile:3",
		"wsgi app {\n  workers 0\n}":                  "not a positive integer",
		"wsgi app {\n  bogus 1\n}":                    `unrecognized wsgi option "bogus"`,
		"wsgi app {\n  env A\n}":                      "env needs a name and a value",
		"wsgi app {\n  buffer_body x\n}":              "buffer_body",
		"wsgi app {\n  queue_timeout -1s\n}":          "positive duration",
		"wsgi app {\n  env_file\n}":                   "env_file takes one or more paths, at Testfile:2",
		"wsgi app {\n  env_file /nonexistent/.env\n}": "env_file: open /nonexistent/.env: no such file or directory, at Testfile:2",
	} {
		_, err := parse(t, input)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got error %v, want one containing %q", input, err, want)
		}
	}
}

// TestExampleDocumentsEveryOption keeps Caddyfile.example and the struct in step: every
// JSON field of WSGI must appear as an option in the example.
func TestExampleDocumentsEveryOption(t *testing.T) {
	example, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeOf(WSGI{})
	for i := 0; i < typ.NumField(); i++ {
		tag := strings.Split(typ.Field(i).Tag.Get("json"), ",")[0]
		if tag == "" || tag == "-" || tag == "app" {
			continue
		}
		if !regexp.MustCompile(`(?m)^\s*(# )?` + tag + `(\s|$)`).Match(example) {
			t.Errorf("option %q is not documented in Caddyfile.example", tag)
		}
	}
}

func TestUnmarshalASGICaddyfile(t *testing.T) {
	m := new(ASGI)
	err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`asgi main:app {
		venv /srv/venv
		workers 3
		max_concurrency 250
		lifespan on
		timeout 10s
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if m.App != "main:app" || m.Workers != 3 || m.MaxConcurrency != 250 || m.Lifespan != "on" || m.Venv != "/srv/venv" {
		t.Errorf("parsed %+v", m)
	}
	for input, want := range map[string]string{
		"asgi main:app {\n lifespan maybe\n}":      `lifespan: "maybe" is not auto, on or off, at Testfile:2`,
		"asgi main:app {\n max_concurrency 0\n}":   `max_concurrency: "0" is not an integer from 1 to 10000, at Testfile:2`,
		"asgi main:app {\n threads 4\n}":           `asgi: threads is set by the directive itself (use max_concurrency), at Testfile:2`,
		"asgi main:app {\n worker_class gevent\n}": `asgi: worker_class is set by the directive itself (use max_concurrency), at Testfile:2`,
		"asgi {\n workers 2\n}":                    `asgi needs an app: asgi module:callable`,
		"asgi main:app {\n max_concurrency 1 2\n}": `max_concurrency takes one value, at Testfile:2`,
	} {
		m := new(ASGI)
		err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", input, err, want)
		}
	}
}
