package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

// The wsgi and asgi directives of a site block add the handoff listener wrapper to the
// site's server, once, and keep their route.
func TestDirectivesAddHandoff(t *testing.T) {
	for _, dir := range []string{"wsgi app:application", "asgi main:app"} {
		cf := "http://127.0.0.1:8080 {\n\t" + dir + "\n\t" + dir + "\n}\n"
		out, _, err := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}.Adapt([]byte(cf), nil)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		js := string(out)
		if !strings.Contains(js, `"listener_wrappers":[{"wrapper":"wsgi_handoff"}`) {
			t.Errorf("%s: want the wsgi_handoff listener wrapper (repeated ones wrap once) in %s", dir, js)
		}
		if !strings.Contains(js, `"handler":"`+strings.Fields(dir)[0]+`"`) {
			t.Errorf("%s: the handler route is missing: %s", dir, js)
		}
	}
}
