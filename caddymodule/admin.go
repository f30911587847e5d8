package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-wsgi/caddy-wsgi/workerpool"
)

func init() {
	caddy.RegisterModule(adminPools{})
}

// adminPools serves /wsgi/pools on Caddy's admin endpoint: the state of every worker
// pool, and rolling restarts and scaling by pool name.
type adminPools struct{}

// CaddyModule returns the Caddy module information.
func (adminPools) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.wsgi",
		New: func() caddy.Module { return new(adminPools) },
	}
}

// Routes returns the admin routes.
func (a adminPools) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/wsgi/pools", Handler: caddy.AdminHandlerFunc(a.list)},
		{Pattern: "/wsgi/pools/", Handler: caddy.AdminHandlerFunc(a.action)},
	}
}

// poolView is one pool in GET /wsgi/pools.
type poolView struct {
	Name  string `json:"name"`
	State string `json:"state"` // serving, draining
	workerpool.Stats
}

func view(h *poolHolder) poolView {
	state := "serving"
	if h.pool.Draining() {
		state = "draining"
	}
	return poolView{Name: h.name, State: state, Stats: h.pool.Stats()}
}

func (adminPools) list(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed")}
	}
	out := []poolView{}
	for _, h := range listPools() {
		out = append(out, view(h))
	}
	return writeJSON(w, out)
}

// action handles POST /wsgi/pools/<name>/restart and POST /wsgi/pools/<name>/scale.
func (adminPools) action(w http.ResponseWriter, r *http.Request) error {
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/health") {
		name := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/wsgi/pools/"), "/health")
		return writePoolHealth(w, name)
	}
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed")}
	}
	rest := strings.TrimPrefix(r.URL.Path, "/wsgi/pools/")
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("want /wsgi/pools/<name>/restart or /scale")}
	}
	name, verb := rest[:i], rest[i+1:]
	h, ok := findPool(name)
	if !ok {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no wsgi pool named %q", name)}
	}
	switch verb {
	case "restart":
		n, err := h.pool.Restart(r.Context(), workerpool.ReasonRestart)
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
		}
		return writeJSON(w, map[string]int{"restarted": n})
	case "scale":
		var body struct {
			Workers int `json:"workers"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("want {\"workers\": n}: %v", err)}
		}
		if err := h.pool.Scale(body.Workers); err != nil {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
		}
		return writeJSON(w, view(h))
	}
	return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("unknown action %q", verb)}
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

// Interface guard
var _ caddy.AdminRouter = (*adminPools)(nil)
