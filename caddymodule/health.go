package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-wsgi/caddy-wsgi/workerpool"
)

// Readiness of a pool: ready when at least one worker has imported the app. The same
// answer is served by the wsgi_health handler (for load balancers and Kubernetes probes)
// and by the admin API at GET /wsgi/pools/<name>/health.

func init() {
	caddy.RegisterModule(WSGIHealth{})
	httpcaddyfile.RegisterHandlerDirective("wsgi_health", parseHealthCaddyfile)
	// Before handle (so before respond and wsgi): `wsgi_health /healthz` at the top of a
	// site answers /healthz even when the app sits in a catch-all `handle { wsgi ... }`
	// or under `handle_path`. It comes after redir, rewrite, basic_auth and
	// forward_auth: keep the health path out of their matchers.
	httpcaddyfile.RegisterDirectiveOrder("wsgi_health", httpcaddyfile.Before, "handle")
}

// healthRetryAfter is the Retry-After, in seconds, of a 503 from the health check.
const healthRetryAfter = "5"

// Health states.
const (
	healthReady     = "ready"     // a worker has imported the app
	healthStarting  = "starting"  // no worker yet; none has failed
	healthFailing   = "failing"   // the app fails to import; the pool keeps retrying
	healthUnknown   = "unknown"   // no pool of that name (yet)
	healthAmbiguous = "ambiguous" // no name given and several pools run
)

// healthBody is the JSON answer of a health check.
type healthBody struct {
	Status  string   `json:"status"`
	Pool    string   `json:"pool,omitempty"`
	Workers int      `json:"workers"`
	Error   string   `json:"error,omitempty"`
	Pools   []string `json:"pools,omitempty"`
}

// healthOf judges a pool's stats: the status code and the body.
func healthOf(name string, st workerpool.Stats) (int, healthBody) {
	b := healthBody{Pool: name, Workers: len(st.Workers)}
	switch {
	case b.Workers > 0:
		b.Status = healthReady
		return http.StatusOK, b
	case st.Failing:
		b.Status = healthFailing
		b.Error = "the app fails to import; see Caddy's log"
	default:
		b.Status = healthStarting
	}
	return http.StatusServiceUnavailable, b
}

// poolHealth answers for the serving pool with that name (the admin API's GET
// /wsgi/pools/<name>/health): 200 when ready, 503 when not, 404 when there is no such
// pool.
func poolHealth(name string) (int, []byte) {
	h, ok := findPool(name)
	if !ok {
		return encodeHealth(http.StatusNotFound, healthBody{Status: healthUnknown, Pool: name,
			Error: fmt.Sprintf("no wsgi pool named %q", name), Pools: poolNames()})
	}
	return encodeHealth(healthOf(h.name, h.pool.Stats()))
}

// writePoolHealth writes poolHealth(name) to w, with Retry-After on a 503.
func writePoolHealth(w http.ResponseWriter, name string) error {
	code, body := poolHealth(name)
	return writeHealth(w, code, body)
}

// siteHealth answers the wsgi_health handler. With a name it is that pool, or 503 while
// there is none (a config whose pool has not started yet). Without one it is the only
// serving pool; with several, 500 naming them, since that is a config error no wait
// will fix.
func siteHealth(name string) (int, []byte) {
	if name != "" {
		h, ok := findPool(name)
		if !ok {
			return encodeHealth(http.StatusServiceUnavailable, healthBody{Status: healthUnknown, Pool: name,
				Error: fmt.Sprintf("no wsgi pool named %q", name)})
		}
		return encodeHealth(healthOf(h.name, h.pool.Stats()))
	}
	names := poolNames()
	switch len(names) {
	case 0:
		return encodeHealth(http.StatusServiceUnavailable, healthBody{Status: healthUnknown, Error: "no wsgi pool runs"})
	case 1:
		if h, ok := findPool(names[0]); ok {
			return encodeHealth(healthOf(h.name, h.pool.Stats()))
		}
		return encodeHealth(http.StatusServiceUnavailable, healthBody{Status: healthUnknown, Pool: names[0]})
	}
	return encodeHealth(http.StatusInternalServerError, healthBody{Status: healthAmbiguous, Pools: names,
		Error: "several wsgi pools run: name one, as in `wsgi_health <name>` (" + strings.Join(names, ", ") + ")"})
}

// poolNames lists the names of the serving (not draining) pools, sorted, once each.
func poolNames() []string {
	seen := map[string]bool{}
	var out []string
	for _, h := range listPools() {
		if !h.pool.Draining() && !seen[h.name] {
			seen[h.name] = true
			out = append(out, h.name)
		}
	}
	sort.Strings(out)
	return out
}

func encodeHealth(code int, b healthBody) (int, []byte) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep `<name>` readable in the error text
	_ = enc.Encode(b)
	return code, buf.Bytes()
}

func writeHealth(w http.ResponseWriter, code int, body []byte) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", healthRetryAfter)
	}
	w.WriteHeader(code)
	_, err := w.Write(body)
	return err
}

// WSGIHealth answers whether a wsgi pool can serve: 200
// `{"status":"ready","pool":"<name>","workers":<n>}` when at least one worker has
// imported the app, else 503 with Retry-After and status `starting` (no worker yet),
// `failing` (the app fails to import) or `unknown` (no pool of that name). It reads the
// pool's state and never waits for a worker, so it answers at once even when every
// worker is busy. It ends the handler chain.
//
// Caddyfile: `wsgi_health [<matcher>] [<pool name>]`, ordered before `handle`, so
// `wsgi_health /healthz` at the top of a site comes before the site's `handle` blocks
// and `wsgi`; inside a `handle` block it works bare.
type WSGIHealth struct {
	// The pool: the name given with the wsgi `name` option, else its app spec. When
	// empty and one pool runs, that pool; when several run, every check answers 500
	// naming them.
	Pool string `json:"pool,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (WSGIHealth) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.wsgi_health",
		New: func() caddy.Module { return new(WSGIHealth) },
	}
}

// ServeHTTP answers the health check; next is never called.
func (m *WSGIHealth) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	code, body := siteHealth(m.Pool)
	if r.Method == http.MethodHead {
		body = nil
	}
	return writeHealth(w, code, body)
}

func parseHealthCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(WSGIHealth)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from `wsgi_health [<pool name>]`.
func (m *WSGIHealth) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		m.Pool = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Err("wsgi_health takes no block")
	}
	return nil
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*WSGIHealth)(nil)
	_ caddyfile.Unmarshaler       = (*WSGIHealth)(nil)
)
